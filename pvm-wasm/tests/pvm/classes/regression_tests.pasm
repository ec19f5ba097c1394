class ".ru.dz.phantom.system.regression_tests" fields 5 methods 22 base ".internal.object" version "20170628060000180"
method "print" 16
    iconst_32bit 1
    isublu
    jz Lok
    sconst_bin "arg count: print in .ru.dz.phantom.system.regression_tests"
    throw
Lok:
    summon_null
    os_load8 0
    os_get32 0
    call_10 1
    os_drop
    summon_null
    ret
    ret
end
signature "print" 16 ctor 0 returns ".internal.void" args "s" ".internal.string"
linemap 16 0 10 5 11
method "array_test" 17
    iconst_32bit 0
    isublu
    jz Lok
    sconst_bin "arg count: array_test in .ru.dz.phantom.system.regression_tests"
    throw
Lok:
    summon_this
    sconst_bin "Checking arrays... "
    call_10 1
    os_drop
    summon_array_class
    new
    os_dup
    short_call_0
    os_drop
    os_save8 4
    os_load8 4
    sconst_bin "zero"
    iconst_32bit 0
    i2o
    call_0b 2
    os_drop
    os_load8 4
    sconst_bin "two"
    iconst_32bit 2
    i2o
    call_0b 2
    os_drop
    os_load8 4
    sconst_bin "one"
    iconst_32bit 1
    i2o
    call_0b 2
    os_drop
    summon_this
    sconst_bin "Beeping: "
    call_10 1
    os_drop
    iconst_32bit 2
    i2o
    os_save8 2
Lloop:
    os_load8 2
    o2i
    iconst_0
    ige
    jz Lend
    summon_this
    sconst_bin "beep "
    call_10 1
    os_drop
    summon_this
    os_load8 4
    os_load8 2
    call_0a 1
    call_10 1
    os_drop
    summon_this
    sconst_bin "! "
    call_10 1
    os_drop
    os_load8 2
    o2i
    iconst_32bit 1
    isublu
    i2o
    os_save8 2
    jmp Lloop
Lend:
    summon_this
    sconst_bin "\n"
    call_10 1
    os_drop
    os_load8 4
    iconst_32bit 0
    i2o
    iconst_32bit 0
    i2o
    call_0b 2
    os_drop
    os_load8 4
    iconst_32bit 2
    i2o
    iconst_32bit 2
    i2o
    call_0b 2
    os_drop
    os_load8 4
    iconst_32bit 1
    i2o
    iconst_32bit 1
    i2o
    call_0b 2
    os_drop
    os_load8 4
    iconst_32bit 0
    i2o
    call_0a 1
    iconst_32bit 0
    i2o
    call_04 1
    o2i
    jz Lbad
    os_load8 4
    iconst_32bit 1
    i2o
    call_0a 1
    iconst_32bit 1
    i2o
    call_04 1
    o2i
    jz Lbad
    os_load8 4
    iconst_32bit 2
    i2o
    call_0a 1
    iconst_32bit 2
    i2o
    call_04 1
    o2i
    jz Lbad
    summon_this
    sconst_bin "passed\n"
    call_10 1
    os_drop
    summon_null
    ret
Lbad:
    sconst_bin "array error"
    throw
    ret
end
signature "array_test" 17 ctor 0 returns ".internal.void"
method "math_test" 18
    iconst_32bit 0
    isublu
    jz Lok
    sconst_bin "arg count: math_test in .ru.dz.phantom.system.regression_tests"
    throw
Lok:
    summon_this
    sconst_bin "Checking int math... "
    call_10 1
    os_drop
    iconst_32bit 2
    iconst_32bit 2
    isum
    iconst_32bit 4
    isublu
    log_not
    jz Lbad1
    jmp Lok1
Lbad1:
    sconst_bin "int + math error"
    throw
Lok1:
    iconst_32bit 2
    iconst_32bit 2
    isublu
    iconst_32bit 0
    isublu
    log_not
    jz Lbad2
    jmp Lok2
Lbad2:
    sconst_bin "int - math error"
    throw
Lok2:
    iconst_32bit 2
    iconst_32bit 2
    idivlu
    iconst_32bit 1
    isublu
    log_not
    jz Lbad3
    jmp Lok3
Lbad3:
    sconst_bin "int / math error"
    throw
Lok3:
    iconst_32bit 3
    iconst_32bit 3
    imul
    iconst_32bit 9
    isublu
    log_not
    jz Lbad4
    jmp Lok4
Lbad4:
    sconst_bin "int * math error"
    throw
Lok4:
    iconst_32bit 1
    iconst_32bit 2
    ilt
    jz Lbad5
    jmp Lok5
Lbad5:
    sconst_bin "int < math error"
    throw
Lok5:
    iconst_32bit 2
    iconst_32bit 1
    ilt
    log_not
    jz Lbad6
    jmp Lok6
Lbad6:
    sconst_bin "int < math error"
    throw
Lok6:
    iconst_32bit 2
    iconst_32bit 1
    igt
    jz Lbad7
    jmp Lok7
Lbad7:
    sconst_bin "int > math error"
    throw
Lok7:
    iconst_32bit 1
    iconst_32bit 2
    igt
    log_not
    jz Lbad8
    jmp Lok8
Lbad8:
    sconst_bin "int > math error"
    throw
Lok8:
    iconst_32bit 1
    iconst_32bit 2
    ile
    jz Lbad9
    jmp Lok9
Lbad9:
    sconst_bin "int <= math error"
    throw
Lok9:
    iconst_32bit 2
    iconst_32bit 2
    ile
    jz Lbad10
    jmp Lok10
Lbad10:
    sconst_bin "int <= math error"
    throw
Lok10:
    iconst_32bit 2
    iconst_32bit 1
    ile
    log_not
    jz Lbad11
    jmp Lok11
Lbad11:
    sconst_bin "int <= math error"
    throw
Lok11:
    iconst_32bit 2
    iconst_32bit 1
    ige
    jz Lbad12
    jmp Lok12
Lbad12:
    sconst_bin "int >= math error"
    throw
Lok12:
    iconst_32bit 2
    iconst_32bit 2
    ige
    jz Lbad13
    jmp Lok13
Lbad13:
    sconst_bin "int >= math error"
    throw
Lok13:
    iconst_32bit 1
    iconst_32bit 2
    ige
    log_not
    jz Lbad14
    jmp Lok14
Lbad14:
    sconst_bin "int >= math error"
    throw
Lok14:
    iconst_32bit 0
    iconst_32bit 0
    log_or
    iconst_32bit 0
    isublu
    log_not
    jz Lbad15
    jmp Lok15
Lbad15:
    sconst_bin "int || math error"
    throw
Lok15:
    iconst_32bit 0
    iconst_32bit 0
    log_and
    iconst_32bit 0
    isublu
    log_not
    jz Lbad16
    jmp Lok16
Lbad16:
    sconst_bin "int && math error"
    throw
Lok16:
    iconst_32bit 0
    iconst_32bit 0
    ior
    iconst_32bit 0
    isublu
    log_not
    jz Lbad17
    jmp Lok17
Lbad17:
    sconst_bin "int | math error"
    throw
Lok17:
    iconst_32bit 0
    iconst_32bit 0
    iand
    iconst_32bit 0
    isublu
    log_not
    jz Lbad18
    jmp Lok18
Lbad18:
    sconst_bin "int & math error"
    throw
Lok18:
    iconst_32bit 0
    iconst_32bit 1
    log_or
    iconst_32bit 1
    isublu
    log_not
    jz Lbad19
    jmp Lok19
Lbad19:
    sconst_bin "int || math error"
    throw
Lok19:
    iconst_32bit 0
    iconst_32bit 1
    log_and
    iconst_32bit 0
    isublu
    log_not
    jz Lbad20
    jmp Lok20
Lbad20:
    sconst_bin "int && math error"
    throw
Lok20:
    iconst_32bit 0
    iconst_32bit 1
    ior
    iconst_32bit 1
    isublu
    log_not
    jz Lbad21
    jmp Lok21
Lbad21:
    sconst_bin "int | math error"
    throw
Lok21:
    iconst_32bit 0
    iconst_32bit 1
    iand
    iconst_32bit 0
    isublu
    log_not
    jz Lbad22
    jmp Lok22
Lbad22:
    sconst_bin "int & math error"
    throw
Lok22:
    iconst_32bit 1
    iconst_32bit 0
    log_or
    iconst_32bit 1
    isublu
    log_not
    jz Lbad23
    jmp Lok23
Lbad23:
    sconst_bin "int || math error"
    throw
Lok23:
    iconst_32bit 1
    iconst_32bit 0
    log_and
    iconst_32bit 0
    isublu
    log_not
    jz Lbad24
    jmp Lok24
Lbad24:
    sconst_bin "int && math error"
    throw
Lok24:
    iconst_32bit 1
    iconst_32bit 0
    ior
    iconst_32bit 1
    isublu
    log_not
    jz Lbad25
    jmp Lok25
Lbad25:
    sconst_bin "int | math error"
    throw
Lok25:
    iconst_32bit 1
    iconst_32bit 0
    iand
    iconst_32bit 0
    isublu
    log_not
    jz Lbad26
    jmp Lok26
Lbad26:
    sconst_bin "int & math error"
    throw
Lok26:
    iconst_32bit 1
    iconst_32bit 1
    log_or
    iconst_32bit 1
    isublu
    log_not
    jz Lbad27
    jmp Lok27
Lbad27:
    sconst_bin "int || math error"
    throw
Lok27:
    iconst_32bit 1
    iconst_32bit 1
    log_and
    iconst_32bit 1
    isublu
    log_not
    jz Lbad28
    jmp Lok28
Lbad28:
    sconst_bin "int && math error"
    throw
Lok28:
    iconst_32bit 1
    iconst_32bit 1
    ior
    iconst_32bit 1
    isublu
    log_not
    jz Lbad29
    jmp Lok29
Lbad29:
    sconst_bin "int | math error"
    throw
Lok29:
    iconst_32bit 1
    iconst_32bit 1
    iand
    iconst_32bit 1
    isublu
    log_not
    jz Lbad30
    jmp Lok30
Lbad30:
    sconst_bin "int & math error"
    throw
Lok30:
    summon_this
    sconst_bin "passed\n"
    call_10 1
    os_drop
    summon_null
    ret
end
signature "math_test" 18 ctor 0 returns ".internal.void"
method "run" 19
    iconst_32bit 1
    isublu
    jz Lok
    sconst_bin "arg count: run in .ru.dz.phantom.system.regression_tests"
    throw
Lok:
    summon_null
    os_get32 0
    os_save8 0
    iconst_0
    i2o
    os_save8 1
    summon_this
    sconst_bin "Phantom language regression tests are running\n"
    call_10 1
    os_drop
    summon_this
    call_15 0
    os_drop
    summon_this
    call_12 0
    os_drop
    summon_this
    call_11 0
    os_drop
    summon_null
    ret
end
signature "run" 19 ctor 0 returns ".internal.void" args "boot" ""
method "test_do_while" 20
    iconst_32bit 0
    isublu
    jz Lok
    sconst_bin "arg count: test_do_while in .ru.dz.phantom.system.regression_tests"
    throw
Lok:
    iconst_32bit 3
    i2o
    os_save8 2
    iconst_32bit 0
    i2o
    os_save8 3
Ltop:
    os_load8 3
    o2i
    iconst_32bit 1
    isum
    i2o
    os_save8 3
    os_load8 2
    o2i
    os_load8 2
    o2i
    iconst_32bit 1
    isublu
    i2o
    os_save8 2
    jz Lend
    jmp Ltop
Lend:
    os_load8 3
    iconst_32bit 4
    i2o
    call_04 1
    o2i
    jz Lbad
    summon_null
    ret
Lbad:
    sconst_bin "do/while error"
    throw
end
signature "test_do_while" 20 ctor 0 returns ".internal.void"
method "flow_test" 21
    iconst_32bit 0
    isublu
    jz Lok
    sconst_bin "arg count: flow_test in .ru.dz.phantom.system.regression_tests"
    throw
Lok:
    summon_this
    sconst_bin "Checking flow control operators... "
    call_10 1
    os_drop
    iconst_32bit 0
    jz L1
    sconst_bin "if(0) error"
    throw
L1:
    iconst_32bit 0
    iconst_32bit 1
    isublu
    log_not
    jz L2
    sconst_bin "0==1 error"
    throw
L2:
    iconst_32bit 0
    iconst_32bit 0
    isublu
    jz L3
    sconst_bin "0!=0 error"
    throw
L3:
    iconst_32bit 0
    i2o
    os_save8 3
    iconst_32bit 1
    jz L4
    iconst_32bit 1
    i2o
    os_save8 3
L4:
    os_load8 3
    iconst_32bit 1
    i2o
    call_04 1
    o2i
    log_not
    jz L5
    sconst_bin "if(1) error"
    throw
L5:
    summon_this
    call_14 0
    os_drop
    iconst_32bit 2
    i2o
    os_save8 2
    os_load8 2
    o2i
    is_dup
    iconst_32bit 1
    isublu
    jz Lc1
    is_dup
    iconst_32bit 2
    isublu
    jz Lc2
    jmp Ldef
Lc1:
    is_drop
    sconst_bin "switch fall in error"
    throw
Lc2:
    is_drop
    jmp Lout
    sconst_bin "switch fall out error"
    throw
Ldef:
    is_drop
    sconst_bin "switch dafault error"
    throw
Lout:
    summon_this
    sconst_bin "passed\n"
    call_10 1
    os_drop
    ret
end
signature "flow_test" 21 ctor 0 returns ".internal.void"
field "boot_object" 0 ""
field "boot_success" 1 ".internal.int"
field "i" 2 ".internal.int"
field "j" 3 ".internal.int"
field "test_array" 4 ""[".internal.void"]
