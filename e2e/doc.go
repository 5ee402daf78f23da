// Package e2e holds the end-to-end tests of twinpbx: they build the real
// `twinpbx` binary, run it on free loopback ports with a data folder of its
// own, and drive it with real SIP peers (sipp scenarios in testdata/sipp and
// baresip phones), checking what the peers saw and the CDRs the PBX wrote.
//
// The peers come from Debian (scripts/install-deps.sh installs them). A
// missing peer fails the tests rather than skipping them, so that a broken
// test machine cannot pass; set TWINPBX_E2E=off to skip the package.
package e2e
