#!/bin/sh
# Prints the memcheck suppressions the Go runtime inside libdweb.so needs
# (make ctest-valgrind writes them to build/valgrind.supp). Why each is
# needed, and why ASan is the primary checker, is in docs/ffi.md.
#
# 1. Go's heap, stacks and arenas are mmap'd regions the runtime manages
#    itself: memcheck sees reads and writes of "unaddressable" memory and
#    conditional jumps on "uninitialised" values in Go code. Suppressed when
#    the top frame is in libdweb.so, so errors in libc (malloc/free of the
#    strings that cross the ABI) and in the C caller still show.
# 2. Go makes system calls directly (not through libc) with buffers in that
#    heap. memcheck matches a Param suppression's parameter name exactly (no
#    wildcards), so every name Go's runtime and net/os packages use is listed.
set -eu
for k in Addr1 Addr2 Addr4 Addr8 Addr16 Addr32 Cond Value1 Value2 Value4 Value8 Value16 Value32; do
	printf '{\n   go-heap-%s\n   Memcheck:%s\n   obj:*/libdweb.so\n}\n' "$k" "$k"
done
params='write(buf) read(buf) pread64(buf) pwrite64(buf) fstat(buf) fstatat(buf) fstatat(file_name)
newfstatat(buf) newfstatat(file_name) statx(buf) statx(file_name) openat(filename) mkdirat(pathname)
unlinkat(pathname) renameat(oldpath) renameat(newpath) renameat2(oldpath) renameat2(newpath)
readlinkat(path) readlinkat(buf) getdents64(dirp) getrandom(buf) getrandom(cpu) futex(futex)
futex(timeout) epoll_ctl(event) epoll_pwait(events) epoll_wait(events) setsockopt(optval)
getsockopt(optval) getsockopt(optlen) bind(my_addr) connect(serv_addr) getsockname(name)
getsockname(namelen) getpeername(name) getpeername(namelen) sendmsg(msg.msg_name)
sendmsg(msg.msg_iov[0]) sendmsg(msg.msg_control) sendto(to) sendto(msg) recvfrom(buf)
recvfrom(from) recvfrom(fromlen) recvmsg(msg.msg_name) recvmsg(msg.msg_iov[0])
recvmsg(msg.msg_control) rt_sigaction(act) rt_sigaction(oldact) rt_sigprocmask(set)
rt_sigprocmask(oldset) sigaltstack(ss) sigaltstack(oss) sched_getaffinity(mask) uname(buf)
clock_gettime(tp) nanosleep(req) fcntl(lock) flock(fd) fchmodat(filename) utimensat(filename)
ioctl(arg) pipe2(filedes) prlimit64(old_rlim) getrlimit(rlim) setrlimit(rlim) madvise(start)'
# Some kernels' valgrind names the socket calls' address fields one by one
# (socketcall.bind(my_addr.sin_port) ...): a new UDP socket bound by the
# reachability prober, for instance.
for call in 'bind(my_addr' 'connect(serv_addr' 'sendto(to' 'getsockname(name' 'getpeername(name'; do
	for f in sa_family sin_port sin_addr sin6_port sin6_flowinfo sin6_addr sin6_scope_id; do
		params="$params socketcall.$call.$f) $call.$f)"
	done
	params="$params socketcall.$call)"
done
i=0
while [ $i -lt 64 ]; do
	for f in 'msg_hdr.msg_name' 'msg_hdr.msg_iov[0]' 'msg_hdr.msg_control'; do
		params="$params recvmsg(mmsg[$i].$f) sendmsg(mmsg[$i].$f)"
	done
	i=$((i + 1))
done
for p in $params; do
	printf '{\n   go-syscall\n   Memcheck:Param\n   %s\n   fun:internal/runtime/syscall/*\n}\n' "$p"
	printf '{\n   go-runtime-syscall\n   Memcheck:Param\n   %s\n   fun:runtime.*\n}\n' "$p"
done
