; A small stand-in for ru.dz.phantom.system.boot: startup (8) runs
; do_startup (16) under a `catch (string e)` and prints the exception.
class ".ru.dz.phantom.system.boot" fields 1 methods 17 base ".internal.object" version "20160101000000000"
method "startup" 8
    iconst_32bit 1
    isublu
    jz Lok
    sconst_bin "arg count: startup in .ru.dz.phantom.system.boot"
    throw
Lok:
    summon_null
    summon_string_class
    push_catcher Lcatch
    summon_this
    os_get32 0
    call_10 1
    os_drop
    pop_catcher
    jmp Lout
Lcatch:
    os_set32 1
    os_get32 0
    sconst_bin "\r\nException: '"
    call_10 1
    os_drop
    os_get32 0
    os_get32 1
    call_10 1
    os_drop
    os_get32 0
    sconst_bin "'"
    call_10 1
    os_drop
Lout:
    summon_null
    ret
end
signature "startup" 8 returns ".internal.void" args "boot" ""
method "do_startup" 16
    iconst_32bit 1
    isublu
    jz Lok
    sconst_bin "arg count: do_startup in .ru.dz.phantom.system.boot"
    throw
Lok:
    os_get32 0
    sconst_bin "Phantom System Envirinment Setup is running\n"
    call_10 1
    os_drop
    os_get32 0
    sconst_bin ".ru.dz.phantom.system.regression_tests"
    call_08 1
    new
    os_dup
    os_get32 0
    call_13 1
    os_drop
    os_drop
    os_get32 0
    sconst_bin "Finished compiler regression tests\n"
    call_10 1
    os_drop
    summon_null
    ret
end
signature "do_startup" 16 returns ".internal.void" args "boot" ""
field "boot" 0 ""
