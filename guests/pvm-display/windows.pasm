; .demo.windows: a Phantom program that draws with the window, bitmap and
; tty natives (spec §3.6), for the PVM on a display (`pvm-display`):
;   phantom pvm asm guests/pvm-display/windows.pasm -o classes/demo.windows.pc
;   phantom spawn pvm --classes classes --devices screen.toml --data data --name w -- --class .demo.windows --method 16
;   phantom run --data data w; phantom display --data data w -o windows.png
; (screen.toml grants `display.screen = { device = "sim:framebuffer", width = 860, height = 440, format = "rgb888" }`.)
; Method 16 draws one scene and ends; method 8 draws it, then writes a line
; to the tty every 250 ms, forever: kill -9 loses neither the scene nor the count.
;
; Phantom coordinates: (0, 0) is the bottom-left corner, y grows upwards.
; Fields: 0 = the boot object, 1 = the window, 2 = a bitmap, 3 = the tty.
class ".demo.windows" fields 4 methods 17 base ".internal.object"
method "main" 8
    is_drop                             ; the argument count
    summon_this
    call_10 0                           ; this.scene()
    os_drop
    iconst_0                            ; is[0] = tick
Lloop:
    is_get32 0
    iconst_1
    isum
    is_set32 0
    os_load8 3
    sconst_bin "tick "
    call_11 1                           ; tty.putws("tick ")
    os_drop
    os_load8 3
    is_get32 0
    i2o
    call_05 0                           ; tick.toString()
    call_11 1                           ; tty.putws(...)
    os_drop
    os_load8 3
    sconst_bin "\n"
    call_11 1
    os_drop
    os_load8 0
    iconst_32bit 250
    i2o
    call_15 1                           ; boot.sleep(250)
    os_drop
    jmp Lloop
end
method "scene" 16
    is_drop                             ; the argument count
    summon_by_name ".internal.window"
    new
    os_save8 1                          ; field 1 = new window (400 x 300)
    os_load8 1                          ; setWinPosition(20, 100)
    iconst_32bit 20
    i2o
    iconst_32bit 100
    i2o
    call_1b 2
    os_drop
    os_load8 1                          ; setTitle
    sconst_bin "Phantom windows"
    call_32bit 33 1
    os_drop
    os_load8 1                          ; setBg(cream)
    iconst_32bit -986912
    i2o
    call_17 1
    os_drop
    os_load8 1                          ; clear
    call_14 0
    os_drop
    os_load8 1                          ; setFg(red)
    iconst_32bit -4181968
    i2o
    call_16 1
    os_drop
    os_load8 1                          ; fillBox(20, 20, 120, 80)
    iconst_32bit 20
    i2o
    iconst_32bit 20
    i2o
    iconst_32bit 120
    i2o
    iconst_32bit 80
    i2o
    call_1e 4
    os_drop
    os_load8 1                          ; setFg(blue)
    iconst_32bit -14655296
    i2o
    call_16 1
    os_drop
    os_load8 1                          ; fillEllipse(160, 20, 120, 80)
    iconst_32bit 160
    i2o
    iconst_32bit 20
    i2o
    iconst_32bit 120
    i2o
    iconst_32bit 80
    i2o
    call_1f 4
    os_drop
    os_load8 1                          ; setFg(black)
    iconst_32bit -16777216
    i2o
    call_16 1
    os_drop
    os_load8 1                          ; drawBox(10, 10, 380, 280)
    iconst_32bit 10
    i2o
    iconst_32bit 10
    i2o
    iconst_32bit 380
    i2o
    iconst_32bit 280
    i2o
    call_1d 4
    os_drop
    os_load8 1                          ; setFg(green)
    iconst_32bit -16744448
    i2o
    call_16 1
    os_drop
    os_load8 1                          ; drawLine(10, 150, +370, +100)
    iconst_32bit 10
    i2o
    iconst_32bit 150
    i2o
    iconst_32bit 370
    i2o
    iconst_32bit 100
    i2o
    call_1c 4
    os_drop
    os_load8 1                          ; setFg(black)
    iconst_32bit -16777216
    i2o
    call_16 1
    os_drop
    os_load8 1                          ; drawString(20, 250, ...)
    iconst_32bit 20
    i2o
    iconst_32bit 250
    i2o
    sconst_bin "Hello from Phantom!"
    call_18 3
    os_drop
    summon_by_name ".internal.bitmap"
    new
    os_save8 2                          ; field 2 = new bitmap
    os_load8 2                          ; loadFromString(a 4 x 4 PPM checker)
    sconst_bin "P6\n4 4\n255\n\xd0\xc0\x90\x40\x50\x60\xd0\xc0\x90\x40\x50\x60\x40\x50\x60\xd0\xc0\x90\x40\x50\x60\xd0\xc0\x90\xd0\xc0\x90\x40\x50\x60\xd0\xc0\x90\x40\x50\x60\x40\x50\x60\xd0\xc0\x90\x40\x50\x60\xd0\xc0\x90"
    call_08 1
    os_drop
    os_load8 1                          ; drawImage(300, 200, bitmap)
    iconst_32bit 300
    i2o
    iconst_32bit 200
    i2o
    os_load8 2
    call_19 3
    os_drop
    os_load8 1                          ; update
    call_32bit 34 0
    os_drop
    os_load8 0                          ; boot.setScreenBackground(bitmap): tiled
    os_load8 2
    call_14 1
    os_drop
    summon_by_name ".internal.io.tty"
    new
    os_save8 3                          ; field 3 = new tty
    os_load8 3                          ; moveWindow(440, 100)
    iconst_32bit 440
    i2o
    iconst_32bit 100
    i2o
    call_18 2
    os_drop
    os_load8 3                          ; setTitle
    sconst_bin "VM Shell"
    call_19 1
    os_drop
    os_load8 3                          ; putws
    sconst_bin "Phantom tty\nsecond line\n"
    call_11 1
    os_drop
    summon_null
    ret
end
