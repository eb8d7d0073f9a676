// Package inlineio makes a TCP connection's reads and writes enter the
// kernel without handing the goroutine's P back to Go's scheduler.
//
// Go wraps every socket read and write in entersyscall/exitsyscall, so
// that a call blocking in the kernel does not hold up other goroutines.
// Sockets are non-blocking, so that is only a guard against slow
// syscalls; but a write over loopback runs the receiver's side of TCP in
// the writer's syscall and often lasts longer than one sysmon tick (20 µs).
// With one P (Skein's default, --cores 1) sysmon then takes the P away
// after every such write, hands it to another thread, and keeps polling
// every 20 µs: in Skein's profile at 1,000 req/s that was the runtime's
// largest single cost, about 15 % of each sidecar's CPU.
//
// A Conn issues the read(2) and write(2) itself, through the connection's
// syscall.RawConn (so deadlines, the poller's wait for readiness, and
// Close all work as for any net.Conn), with syscall.RawSyscall: the P stays
// with the goroutine, which is right for a non-blocking socket whose
// syscall never sleeps. Everything else (addresses, deadlines, CloseWrite,
// SyscallConn, ReadFrom and WriteTo for splice) is the *net.TCPConn's own.
package inlineio
