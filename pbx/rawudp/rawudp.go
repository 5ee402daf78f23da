// Package rawudp reads and writes UDP datagrams on a Go UDP socket with
// raw, non-blocking system calls, made without the runtime's system-call
// bookkeeping.
//
// Why: every system call a goroutine makes through the syscall package
// tells the Go scheduler it may block (entersyscall), and that wakes the
// runtime's monitor thread (sysmon) whenever it was asleep. A SIP server
// that sleeps between packets, as a branch office's PBX does nearly all
// the time, pays that wake-up, and the monitor's own short polling that
// follows it, on every packet: measured on the REGISTER path, a
// seventh of the server's CPU and more than one context switch per
// datagram. A recvfrom or sendto on a non-blocking UDP socket never
// blocks (it returns EAGAIN instead), so it needs none of that
// bookkeeping: Conn makes those two calls raw, inside the socket's
// RawConn, which still parks the goroutine in the network poller when no
// datagram is waiting and honours deadlines and Close as net.UDPConn does.
//
// The raw calls are written for Linux, the firmware's only target;
// elsewhere Conn is the plain socket with the same methods.
package rawudp
