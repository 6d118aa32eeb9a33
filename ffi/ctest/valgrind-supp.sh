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
#    wildcards), and which names a run meets depends on timing (a retransmit,
#    a longer recvmmsg batch). So the list is every parameter name the
#    installed memcheck can report, read from its own tool binary, plus the
#    names it builds at run time (sockaddr fields, mmsg and iovec entries);
#    each is suppressed only when the system call is made from libdweb.so.
# 3. Signals (Go preempts goroutines with SIGURG) are delivered on stacks
#    Go allocated; memcheck may call the signal frame unaddressable
#    (CoreMem) wherever Go code was interrupted.
set -eu
for k in Addr1 Addr2 Addr4 Addr8 Addr16 Addr32 Cond Value0 Value1 Value2 Value4 Value8 Value16 Value32 Jump; do
	printf '{\n   go-heap-%s\n   Memcheck:%s\n   obj:*/libdweb.so\n}\n' "$k" "$k"
done
printf '{\n   go-signal-frame\n   Memcheck:CoreMem\n   obj:*/libdweb.so\n}\n'
printf '{\n   go-signal-frame-in-c\n   Memcheck:CoreMem\n   ...\n   obj:*/libdweb.so\n}\n'

# The names Go's runtime and its os and net packages are known to use; the
# scan below adds the rest when it finds the memcheck binary.
params='write(buf) read(buf) pread64(buf) pwrite64(buf) fstat(buf) fstatat(buf) fstatat(file_name)
newfstatat(buf) newfstatat(file_name) statx(buf) statx(file_name) openat(filename) mkdirat(pathname)
unlinkat(pathname) renameat(oldpath) renameat(newpath) renameat2(oldpath) renameat2(newpath)
readlinkat(path) readlinkat(buf) getdents64(dirp) getrandom(buf) getrandom(cpu) futex(futex)
futex(timeout) epoll_ctl(event) epoll_pwait(events) epoll_wait(events) setsockopt(optval)
getsockopt(optval) getsockopt(optlen) bind(my_addr) connect(serv_addr) getsockname(name)
getsockname(namelen) getpeername(name) getpeername(namelen) sendmsg(msg.msg_name)
sendmsg(msg.msg_control) sendto(to) sendto(msg) recvfrom(buf)
recvfrom(from) recvfrom(fromlen) recvmsg(msg.msg_name) recvmsg(msg.msg_control)
rt_sigaction(act) rt_sigaction(oldact) rt_sigprocmask(set)
rt_sigprocmask(oldset) sigaltstack(ss) sigaltstack(oss) sched_getaffinity(mask) uname(buf)
clock_gettime(tp) nanosleep(req) fcntl(lock) flock(fd) fchmodat(filename) utimensat(filename)
ioctl(arg) pipe2(filedes) prlimit64(old_rlim) getrlimit(rlim) setrlimit(rlim) madvise(start)
statfs(buf) statfs(path) fstatfs(buf) getcwd(buf) mincore(vec) sysinfo(info)'
tool=
for d in /usr/libexec/valgrind /usr/lib/valgrind /usr/local/libexec/valgrind /usr/local/lib/valgrind /usr/lib/x86_64-linux-gnu/valgrind /usr/lib/aarch64-linux-gnu/valgrind; do
	for f in "$d"/memcheck-*-linux; do
		[ -f "$f" ] && tool=$f && break 2
	done
done
if [ -n "$tool" ]; then
	# Names such as "sendmsg(msg.msg_iov[0])" are built with printf at run
	# time; the formats ("%s", "%u") are expanded below instead.
	params="$params $(grep -aoE '[a-z_0-9.]+\([][a-zA-Z_0-9.>-]*\)' "$tool" | sort -u | tr '\n' ' ')"
fi
# Socket addresses are checked field by field (socketcall.bind(my_addr.sin_port) ...).
for call in 'bind(my_addr' 'connect(serv_addr' 'sendto(to' 'getsockname(name' 'getpeername(name' \
	'sendmsg(msg.msg_name' 'recvmsg(msg.msg_name' 'recvfrom(from'; do
	for f in sa_family sin_port sin_addr sin6_port sin6_flowinfo sin6_addr sin6_scope_id nl_pid nl_groups sun_path; do
		params="$params socketcall.$call.$f) $call.$f)"
	done
	params="$params socketcall.$call)"
done
# Scatter/gather entries, and the messages of recvmmsg/sendmmsg batches.
i=0
while [ $i -lt 64 ]; do
	params="$params recvmmsg(mmsg[$i].msg_len) sendmmsg(mmsg[$i].msg_len)"
	# msg_hdr.msg_iov alone: the iovec array itself (CI met it once for
	# every message of a recvmmsg batch).
	for f in 'msg_hdr.msg_name' 'msg_hdr.msg_iov' 'msg_hdr.msg_iov[0]' 'msg_hdr.msg_iov[1]' 'msg_hdr.msg_control'; do
		params="$params recvmsg(mmsg[$i].$f) sendmsg(mmsg[$i].$f) recvmmsg(mmsg[$i].$f) sendmmsg(mmsg[$i].$f)"
	done
	if [ $i -lt 8 ]; then
		params="$params sendmsg(msg.msg_iov[$i]) recvmsg(msg.msg_iov[$i]) writev(vector[$i]) readv(vector[$i]) pwritev(vector[$i]) preadv(vector[$i])"
	fi
	i=$((i + 1))
done
for p in $(printf '%s\n' $params | sort -u); do
	printf '{\n   go-syscall\n   Memcheck:Param\n   %s\n   obj:*/libdweb.so\n}\n' "$p"
done
