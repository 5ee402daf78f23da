// Package nstest proves the twin pair end to end: it builds the real
// twinpbx binary, runs boxes A and B in the network-namespace test bed of
// internal/testbed with generated configs, breaks the active box in the
// ways of the decision table of docs/CLUSTER.md, and checks what a phone
// sees: how long the VIP went unanswered, that the two boxes never both
// answered, that registrations and CDRs survived. The tests need root;
// without it they skip, loudly.
package nstest
