// Package nstest proves the site cluster end to end: it builds the real
// twinpbx binary, runs three boxes with a site section in the
// network-namespace test bed of internal/testbed, and checks what the
// phones and the operator see: the boxes meet by their seeds, a phone
// registered on one box is called from a phone on another, a killed box
// is shown gone while the others keep working, and it rejoins when it
// comes back. The tests need root; without it they skip, loudly.
package nstest
