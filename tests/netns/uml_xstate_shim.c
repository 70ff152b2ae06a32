/*
 * LD_PRELOAD wrapper of libc's ptrace() that lets Debian's user-mode-linux boot on CPUs
 * whose XSAVE area is larger than the kernel UML was built for (AMX: 11,008 bytes).
 *
 * Why: UML saves and restores its guest processes' FPU state with
 * PTRACE_GETREGSET/PTRACE_SETREGSET NT_X86_XSTATE through a buffer of the fixed size it was
 * compiled with (2,696 bytes in Debian's 6.1). The host kernel accepts a GETREGSET shorter
 * than its XSAVE size (it writes the prefix) but answers EFAULT to any SETREGSET that is not
 * exactly the full size, and UML panics at init. Here a short SETREGSET becomes: read the
 * tracee's full state, lay the caller's bytes over its prefix, write the full state back.
 * The bytes past the caller's buffer are the tracee's own (e.g. AMX tiles, which UML's
 * guest processes cannot use), so nothing the caller meant to set is lost.
 *
 * Every other call, and every SETREGSET whose buffer is already large enough (all CPUs
 * without AMX, or a UML that sizes its buffer itself), reaches libc's ptrace() unchanged.
 * (One difference remains: a SETREGSET whose iovec points at unmapped memory faults here,
 * in the caller, where the kernel would have answered EFAULT. UML's buffers are its own.)
 *
 * Concurrency: the full state is staged in one static buffer (UML calls ptrace on its own
 * small kernel stacks, so the 64 KiB cannot live on the stack), claimed with an atomic
 * exchange. A caller that finds it taken (another thread sharing our memory, or a signal
 * handler interrupting a padded call on this thread) stages into a private mmap instead, so
 * no caller ever waits and no reentry can deadlock. A forked child inherits a private copy
 * of both the buffer and the claim. The learned XSAVE size is set once (compare-and-swap)
 * and read atomically; threads that learn it at the same time learn the same number.
 *
 * If HYBRIDNET_XSTATE_SHIM_LOG names a file, one line is appended to it when the host's size
 * is learned and one at the first padded call, as they happen (a panicking UML aborts, so
 * nothing could be written at exit): the test runner reads them to show that UML ran with
 * the shim and what it did.
 *
 * Built at test time by tests/netns/native.py: cc -shared -fPIC ... -ldl.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* Larger than any XSAVE area so far (AMX: 11,008 bytes); see read_full_state(). */
#define STAGING_BYTES (64 * 1024)

/* Exported so that tests can see whether, and how often, the padding path ran. */
unsigned long hybridnet_xstate_padded_sets;
/* The host's XSTATE regset size in bytes once learned, 0 before. */
unsigned long hybridnet_xstate_full_size;

typedef long (*ptrace_fn)(enum __ptrace_request, ...);

static ptrace_fn libc_ptrace;
static const char *log_path;
static unsigned char staging[STAGING_BYTES] __attribute__((aligned(64)));
static int staging_claimed;

__attribute__((constructor)) static void resolve_libc_ptrace(void)
{
	void *symbol = dlsym(RTLD_NEXT, "ptrace");
	memcpy(&libc_ptrace, &symbol, sizeof symbol); /* object to function pointer, as POSIX allows */
	log_path = getenv("HYBRIDNET_XSTATE_SHIM_LOG");
}

/* Append "key=value\n" to the log; no stdio, so it is safe wherever ptrace is called from. */
static void log_event(const char *key, unsigned long value)
{
	if (log_path == NULL)
		return;
	char line[96];
	size_t length = 0;
	while (*key != '\0' && length < 64)
		line[length++] = *key++;
	line[length++] = '=';
	char digits[24];
	size_t count = 0;
	do {
		digits[count++] = (char)('0' + value % 10);
		value /= 10;
	} while (value != 0);
	while (count > 0)
		line[length++] = digits[--count];
	line[length++] = '\n';
	int saved = errno;
	int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0) {
		ssize_t written = write(fd, line, length);
		(void)written; /* a lost diagnostic line must not change the caller's ptrace */
		close(fd);
	}
	errno = saved;
}

static long call_ptrace(enum __ptrace_request request, pid_t pid, void *addr, void *data)
{
	if (libc_ptrace == NULL) {
		/* Only if this library is loaded without a libc that defines ptrace. */
		errno = ENOSYS;
		return -1;
	}
	return libc_ptrace(request, pid, addr, data);
}

static unsigned char *claim_staging(void)
{
	if (__atomic_exchange_n(&staging_claimed, 1, __ATOMIC_ACQUIRE) == 0)
		return staging;
	void *own = mmap(NULL, STAGING_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	return own == MAP_FAILED ? NULL : own;
}

static void release_staging(unsigned char *buffer)
{
	if (buffer == staging) {
		__atomic_store_n(&staging_claimed, 0, __ATOMIC_RELEASE);
		return;
	}
	int saved = errno;
	munmap(buffer, STAGING_BYTES);
	errno = saved;
}

/*
 * Read the tracee's whole XSTATE into buffer. The kernel shrinks iov_len to its regset's
 * size, which is how the host's size is learned; a reply that fills the buffer would mean
 * an XSAVE area of 64 KiB or more, whose size cannot be known this way: return 0 (do not
 * pad) rather than guess.
 */
static unsigned long read_full_state(pid_t pid, unsigned char *buffer)
{
	struct iovec whole = {.iov_base = buffer, .iov_len = STAGING_BYTES};
	if (call_ptrace(PTRACE_GETREGSET, pid, (void *)(uintptr_t)NT_X86_XSTATE, &whole) != 0)
		return 0;
	if (whole.iov_len >= STAGING_BYTES)
		return 0;
	unsigned long unknown = 0;
	if (__atomic_compare_exchange_n(&hybridnet_xstate_full_size, &unknown, whole.iov_len, 0,
					__ATOMIC_RELAXED, __ATOMIC_RELAXED))
		log_event("full_size", whole.iov_len);
	return whole.iov_len;
}

/* A short SETREGSET NT_X86_XSTATE, made full size. Returns 1 if handled (result in *out),
 * 0 if the caller's call should go to libc unchanged. */
static int pad_short_set(pid_t pid, const struct iovec *caller, long *out)
{
	unsigned long known = __atomic_load_n(&hybridnet_xstate_full_size, __ATOMIC_RELAXED);
	if (known != 0 && caller->iov_len >= known)
		return 0;
	unsigned char *buffer = claim_staging();
	if (buffer == NULL)
		return 0;
	int saved = errno;
	unsigned long full = read_full_state(pid, buffer);
	if (full == 0 || caller->iov_len >= full) {
		/* Nothing to pad, or the tracee's state is unreadable: the kernel answers the
		 * caller's own call, with its own errno. */
		errno = saved;
		release_staging(buffer);
		return 0;
	}
	memcpy(buffer, caller->iov_base, caller->iov_len);
	struct iovec whole = {.iov_base = buffer, .iov_len = full};
	*out = call_ptrace(PTRACE_SETREGSET, pid, (void *)(uintptr_t)NT_X86_XSTATE, &whole);
	if (__atomic_add_fetch(&hybridnet_xstate_padded_sets, 1, __ATOMIC_RELAXED) == 1)
		log_event("first_padded_set_bytes", caller->iov_len);
	release_staging(buffer);
	return 1;
}

/*
 * glibc declares ptrace variadic and its own definition always reads pid, addr and data
 * with va_arg, whatever the request; reading them the same way here, and passing all three
 * on, keeps every request's behaviour (PEEK* return values included) exactly libc's.
 */
long ptrace(enum __ptrace_request request, ...)
{
	va_list args;
	va_start(args, request);
	pid_t pid = va_arg(args, pid_t);
	void *addr = va_arg(args, void *);
	void *data = va_arg(args, void *);
	va_end(args);

	if (request == PTRACE_SETREGSET && (uintptr_t)addr == NT_X86_XSTATE && data != NULL) {
		const struct iovec *caller = data;
		/* Lengths the kernel rejects as EINVAL (not a multiple of 8) stay its to reject. */
		long result;
		if (caller->iov_len != 0 && caller->iov_len % 8 == 0 &&
		    pad_short_set(pid, caller, &result))
			return result;
	}
	return call_ptrace(request, pid, addr, data);
}
