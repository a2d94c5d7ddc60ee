/* Layout of the memory the read-modify-write loop works on, shared by rmw.S
 * (as offsets) and rmwloop.c (as a struct, checked against the offsets). */
#ifndef RMW_H
#define RMW_H

#define RMW_INC 0
#define RMW_DEC 4
#define RMW_ADD 8
#define RMW_ADC_LO 12
#define RMW_ADC_HI 16
#define RMW_OR 20
#define RMW_XOR 24
#define RMW_XCHG 28
#define RMW_XCHG_SUM 32
#define RMW_XADD 36
#define RMW_XADD_SUM 40
#define RMW_CMPXCHG 44
#define RMW_CMPXCHG_FAILS 48
#define RMW_NOT 52
#define RMW_NOT_SUM 56
#define RMW_NEG 60
#define RMW_NEG_SUM 64
#define RMW_SHL 68
#define RMW_SHL_SUM 72
#define RMW_PP_SRC 76
#define RMW_PP_DST 80
#define RMW_PP_SUM 84
#define RMW_MOVS_SUM 88
#define RMW_SRC 92                      /* RMW_WORDS dwords */
#define RMW_WORDS 64
#define RMW_DST (RMW_SRC + 4 * RMW_WORDS) /* RMW_WORDS dwords */

#define RMW_ADC_STEP 0x9E3779B9         /* added to the 64-bit adc counter */
#define RMW_XADD_STEP 3
#define RMW_CMPXCHG_STEP 5

#ifndef __ASSEMBLER__
#include "types.h"

struct rmw {
    uint32_t inc, dec, add, adc_lo, adc_hi, or_, xor_;
    uint32_t xchg, xchg_sum, xadd, xadd_sum, cmpxchg, cmpxchg_fails;
    uint32_t not_, not_sum, neg, neg_sum, shl, shl_sum;
    uint32_t pp_src, pp_dst, pp_sum, movs_sum;
    uint32_t src[RMW_WORDS], dst[RMW_WORDS];
};

/* Run the loop n times on *m (rmw.S). */
void rmw_run(struct rmw *m, uint32_t n);
#endif

#endif
