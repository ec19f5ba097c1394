; .demo.stats_app: a Phantom program that calls a Wasm component through a
; WIT interface. `.internal.demo.stats` is the native class of the
; pvm-stats guest bound to its import of demo:interop/stats, which a library
; component in Rust or C implements once composed:
;   phantom pvm asm guests/pvm-stats/stats_app.pasm -o classes/demo.stats_app.pc
;   phantom compose target/guests/components/pvm-stats.wasm --with <lib>.wasm -o pvm+lib.wasm
;   phantom spawn pvm+lib.wasm --classes classes --data data --name p -- --class .demo.stats_app --method 8
; Every 2 ms it adds n = 1, 2, ... to its own array and to the library and
; prints
;   count=<n> list=<array size> sum=<its sum> lib=<add's count> total=<library's total> ok=<1|0> | <describe>
;
; Phantom side: field 1 = the native stats object, field 2 = an array of the
; values (a PVM object); is[0] = n, is[1] = sum (frame state).
; Library side: .internal.demo.stats (16 add, 17 count, 18 total, 19 describe).
class ".demo.stats_app" fields 3 methods 9 base ".internal.object"
method "main" 8
    is_drop                             ; the argument count
    summon_by_name ".internal.demo.stats"
    new
    os_save8 1
    summon_array_class
    new
    os_save8 2
    iconst_0                            ; is[0] = n
    iconst_0                            ; is[1] = sum
Lloop:
    is_get32 0
    iconst_1
    isum
    is_set32 0                          ; n += 1
    is_get32 1
    is_get32 0
    isum
    is_set32 1                          ; sum += n
    os_load8 2                          ; values.set(n, n - 1)
    is_get32 0
    i2o
    is_get32 0
    iconst_1
    isublu
    i2o
    call_0b 2
    os_drop
    os_get32 0                          ; "count=" n
    sconst_bin "count="
    call_10 1
    os_drop
    os_get32 0
    is_get32 0
    i2o
    call_10 1
    os_drop
    os_get32 0                          ; " list=" values.size()
    sconst_bin " list="
    call_10 1
    os_drop
    os_get32 0
    os_load8 2
    call_0c 0
    call_10 1
    os_drop
    os_get32 0                          ; " sum=" sum
    sconst_bin " sum="
    call_10 1
    os_drop
    os_get32 0
    is_get32 1
    i2o
    call_10 1
    os_drop
    os_get32 0                          ; " lib=" stats.add(n)
    sconst_bin " lib="
    call_10 1
    os_drop
    os_get32 0
    os_load8 1
    is_get32 0
    i2o
    call_10 1                           ; stats.add (ordinal 16)
    call_10 1                           ; boot.consolePrint
    os_drop
    os_get32 0                          ; " total=" stats.total()
    sconst_bin " total="
    call_10 1
    os_drop
    os_get32 0
    os_load8 1
    call_12 0                           ; a long; printed via its toString
    call_10 1
    os_drop
    os_get32 0                          ; " ok=" count == size && total == sum
    sconst_bin " ok="
    call_10 1
    os_drop
    os_get32 0
    os_load8 1
    call_11 0
    o2i
    os_load8 2
    call_0c 0
    o2i
    isublu
    log_not
    os_load8 1
    call_12 0
    o2i
    is_get32 1
    isublu
    log_not
    log_and
    i2o
    call_10 1
    os_drop
    os_get32 0                          ; " | " stats.describe() "\n"
    sconst_bin " | "
    call_10 1
    os_drop
    os_get32 0
    os_load8 1
    call_13 0
    call_10 1
    os_drop
    os_get32 0
    sconst_bin "\n"
    call_10 1
    os_drop
    os_get32 0                          ; boot.sleep(2 ms)
    iconst_32bit 2
    i2o
    call_15 1
    os_drop
    jmp Lloop
end
signature "main" 8 returns "" args "boot" ""
