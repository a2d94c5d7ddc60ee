#!/bin/sh
# /init of the Linux test guest (guests/linux/README.md): Debian's own kernel and
# modules drive our LSI 53C895A and NE2000. Every check prints one "verdict:" line with
# no timing or platform value in it, so the lines from our monitor and from QEMU can be
# compared as they are. The last line is "verdict: PASS" or "verdict: FAIL ..."; the VM
# ends through the debug-exit port 0xF4 with 0 (pass) or 1 (fail).
export PATH=/bin

mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys

# Parameters from the kernel command line: vmm.NAME=VALUE.
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^vmm\.$1=//p"; }
say() { echo "verdict: $*"; }

finish() {
    # The console driver sends what the shell wrote from a buffer, on interrupts:
    # give it time to drain before the VM goes away.
    sleep 1
    printf "\\$(printf %03o "$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
    say "the debug-exit port did not end the VM"
    exec sleep 100000
}

failures=0
check() { # check NAME COMMAND...: one verdict line for one condition
    name=$1
    shift
    if "$@"; then say "$name: ok"; else say "$name: FAILED"; failures=$((failures + 1)); fi
}

say "init of $(uname -s) $(uname -r | cut -d- -f1-2)"

# -- modules, in dependency order (resolved from their .modinfo when the image was made)
# The NIC driver is the one for the card this machine has: vmm.nic=isa (ne, the ISA
# NE2000 at 0x300, IRQ 9) or vmm.nic=pci (ne2k-pci, the RTL8029).
nic=$(arg nic)
loaded=0
for module in $(cat /lib/modules/load-order); do
    case $module in
    ne.ko) [ "$nic" = isa ] || continue; set -- io=0x300 irq=9 ;;
    ne2k-pci.ko) [ "$nic" = pci ] || continue; set -- ;;
    *) set -- ;;
    esac
    if insmod /lib/modules/$module "$@"; then
        loaded=$((loaded + 1))
    else
        say "insmod $module: FAILED"
        failures=$((failures + 1))
    fi
done
say "modules loaded: $loaded"

# SCSI scanning runs asynchronously: wait for the disk to show up.
wait_for() { # wait_for PATH SECONDS
    tries=$(($2 * 10))
    while [ ! -e "$1" ] && [ $tries -gt 0 ]; do sleep 0.1; tries=$((tries - 1)); done
    [ -e "$1" ]
}
wait_for /sys/block/sda 30
# Kernel messages from here on would interleave with the verdict lines.
dmesg -n 1

# -- the disk, through the kernel's block layer -------------------------------------
sectors=$(arg disk_sectors)
known_md5=$(arg known_md5)
known_bytes=$(arg known_bytes)
write_at=$(arg write_at)
check "disk sda has $sectors sectors" test "$(cat /sys/block/sda/size 2>/dev/null)" = "$sectors"
read_known() {
    dd if=/dev/sda bs=65536 count=$((known_bytes / 65536)) 2>/dev/null | md5sum | cut -d' ' -f1
}
read_md5=$(read_known)
# vmm.read_rounds=N reads it N times in all, from the disk each time (the suspend test
# wants disk I/O in flight for a while); every round must match.
rounds=$(arg read_rounds)
round=1
while [ "$round" -lt "${rounds:-1}" ]; do
    echo 3 > /proc/sys/vm/drop_caches
    blockdev --flushbufs /dev/sda
    [ "$(read_known)" = "$read_md5" ] || read_md5="round $round differs"
    round=$((round + 1))
done
check "first $known_bytes bytes read back as written by the host" test "$read_md5" = "$known_md5"

# 64 KiB the host checks afterwards in the virtual disk (in the storage pool).
yes "written by Linux through sym53c8xx" | head -c 65536 > /tmp/block
written_md5=$(md5sum < /tmp/block | cut -d' ' -f1)
dd if=/tmp/block of=/dev/sda bs=65536 seek=$((write_at / 65536)) conv=fsync 2>/dev/null
# Drop the page cache so the read below comes from the disk, not from memory.
sync
echo 3 > /proc/sys/vm/drop_caches
blockdev --flushbufs /dev/sda
back_md5=$(dd if=/dev/sda bs=65536 skip=$((write_at / 65536)) count=1 2>/dev/null | md5sum | cut -d' ' -f1)
check "64 KiB written at byte $write_at read back" test "$back_md5" = "$written_md5"

# -- the network: eth0 on the NE2000, a peer that answers ARP and ICMP echo ----------
address=$(arg ip)
peer=$(arg peer)
check "eth0 present" test -e /sys/class/net/eth0
ifconfig eth0 "$address" netmask 255.255.255.0 up
replies=$(ping -c 3 -W 5 "$peer" 2>/dev/null | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
check "ping $peer: 3 of 3 echo replies" test "$replies" = 3
received=$(cat /sys/class/net/eth0/statistics/rx_packets)
check "eth0 received frames" test "$received" -gt 0

if [ $failures = 0 ]; then
    say PASS
    finish 0
fi
say "FAIL ($failures checks failed)"
finish 1
