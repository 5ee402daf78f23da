// Command init is PID 1 of the twinpbx firmware image: it boots the box
// and runs `twinpbx run` for ever (see package init/boot, which holds
// the logic).
package main

import "github.com/twinpbx/twinpbx/init/boot"

func main() { boot.Main() }
