/* Access to the Multiboot information structure and "key=value" command-line options. */
#include "multiboot.h"
#include "string.h"

const struct multiboot_info *multiboot_info;

const char *cmdline(void)
{
    if (!multiboot_info || !(multiboot_info->flags & MB_INFO_CMDLINE) || !multiboot_info->cmdline)
        return NULL;
    return (const char *)multiboot_info->cmdline;
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

static uint32_t parse_uint(const char *s, uint32_t def)
{
    uint32_t v = 0, base = 10;
    int digits = 0;

    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    for (;; s++, digits++) {
        uint32_t d;
        if (*s >= '0' && *s <= '9')
            d = *s - '0';
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            d = *s - 'a' + 10;
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            d = *s - 'A' + 10;
        else
            break;
        v = v * base + d;
    }
    return (digits && (*s == '\0' || is_space(*s))) ? v : def;
}

uint32_t cmdline_uint(const char *key, uint32_t def)
{
    const char *p = cmdline();
    size_t klen = strlen(key);

    if (!p)
        return def;
    /* Words are separated by blanks; a loader may put the kernel path first. */
    while (*p) {
        while (is_space(*p))
            p++;
        if (strncmp(p, key, klen) == 0 && p[klen] == '=')
            return parse_uint(p + klen + 1, def);
        while (*p && !is_space(*p))
            p++;
    }
    return def;
}
