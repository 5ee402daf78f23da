// Package bench holds no code of the firmware: it is the home of the
// benchmarks that compare twinpbx with kamailio on the same machine
// (run.sh, dispatch.sh, the kamailio configs and the sipp scenarios), of
// regpair.sh, which compares two revisions of twinpbx on the REGISTER
// path, of startup.sh, which times twinpbx's start to SIP on the
// machine's own CPU (for the board estimate in docs/IMAGE.md), and of the tests that keep those files working. Results and method: docs/BENCHMARKS.md.
package bench
