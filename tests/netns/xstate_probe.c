/*
 * Looks at this host's XSAVE state the way user-mode-linux does: through ptrace of a child.
 * Built at test time by tests/netns/native.py; prints key=value lines for Python to read.
 *
 *   xstate_probe facts      the XSAVE sizes: CPUID leaf 0xD and what PTRACE_GETREGSET
 *                           NT_X86_XSTATE answers (the size a SETREGSET must have).
 *   xstate_probe set LEN    a traced child's state: seed a register component that lies past
 *                           LEN bytes, then GETREGSET LEN bytes, change XMM15 in them,
 *                           SETREGSET those LEN bytes, and read the whole state back:
 *                           did the call succeed, did the prefix land, did the tail survive.
 *                           LEN 0 means the full size. If uml_xstate_shim.so is preloaded,
 *                           its counters are printed too.
 *
 * Exit status 0 means the probe ran (its findings are in the output), 2 means it could not.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUFFER_BYTES (64 * 1024)
#define XSAVE_HEADER_OFFSET 512
#define XMM15_OFFSET (160 + 15 * 16)
#define XFEATURE_SSE 1

static unsigned char state[BUFFER_BYTES] __attribute__((aligned(64)));
static unsigned char sent[BUFFER_BYTES] __attribute__((aligned(64)));
static unsigned char readback[BUFFER_BYTES] __attribute__((aligned(64)));

static void give_up(const char *what)
{
	fprintf(stderr, "xstate_probe: %s: %s\n", what, strerror(errno));
	exit(2);
}

static pid_t stopped_child(void)
{
	pid_t child = fork();
	if (child < 0)
		give_up("fork");
	if (child == 0) {
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0)
			_exit(3);
		raise(SIGSTOP);
		_exit(0);
	}
	int status;
	if (waitpid(child, &status, 0) != child || !WIFSTOPPED(status)) {
		errno = ECHILD;
		give_up("the traced child did not stop");
	}
	return child;
}

static void end_child(pid_t child)
{
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
}

static long xstate(enum __ptrace_request request, pid_t child, void *buffer, size_t *length)
{
	struct iovec iov = {.iov_base = buffer, .iov_len = *length};
	errno = 0;
	long result = ptrace(request, child, (void *)(uintptr_t)NT_X86_XSTATE, &iov);
	*length = iov.iov_len;
	return result;
}

/* The kernel shrinks a GETREGSET's iov_len to its regset's size: that is the full size.
 * The child's whole state is left in `into`. */
static size_t ptrace_full_size(pid_t child, unsigned char *into)
{
	size_t length = BUFFER_BYTES;
	if (xstate(PTRACE_GETREGSET, child, into, &length) != 0)
		give_up("PTRACE_GETREGSET NT_X86_XSTATE");
	return length;
}

static uint64_t enabled_features(void)
{
	unsigned int eax, ebx, ecx, edx;
	if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE))
		return 0;
	uint32_t low, high;
	__asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
	return ((uint64_t)high << 32) | low;
}

static int facts(void)
{
	unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
	if (__get_cpuid_max(0, NULL) >= 0xd) {
		__cpuid_count(0xd, 0, eax, ebx, ecx, edx);
		printf("cpuid_xsave_enabled_bytes=%u\n", ebx);
		printf("cpuid_xsave_max_bytes=%u\n", ecx);
	}
	printf("xcr0=0x%llx\n", (unsigned long long)enabled_features());
	pid_t child = stopped_child();
	printf("ptrace_xstate_bytes=%zu\n", ptrace_full_size(child, state));
	end_child(child);
	return 0;
}

/*
 * A component whose bytes may hold any value (the AVX and AVX-512 registers), enabled in
 * XCR0 and lying wholly past `after` in the standard format; returns its number, 0 if none.
 */
static int register_component_after(size_t after, size_t full, unsigned int *offset,
				    unsigned int *size)
{
	static const int candidates[] = {2, 5, 6, 7}; /* YMM_Hi128, opmask, ZMM_Hi256, Hi16_ZMM */
	uint64_t enabled = enabled_features();
	for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
		int component = candidates[i];
		unsigned int eax, ebx, ecx, edx;
		if (!(enabled & (1ULL << component)))
			continue;
		__cpuid_count(0xd, component, eax, ebx, ecx, edx);
		if (ebx >= after && ebx + eax <= full) {
			*offset = ebx;
			*size = eax;
			return component;
		}
	}
	return 0;
}

static void print_shim_counters(void)
{
	const unsigned long *padded = dlsym(RTLD_DEFAULT, "hybridnet_xstate_padded_sets");
	const unsigned long *learned = dlsym(RTLD_DEFAULT, "hybridnet_xstate_full_size");
	if (padded == NULL || learned == NULL) {
		printf("shim=absent\n");
		return;
	}
	printf("shim=present\n");
	printf("shim_padded_sets=%lu\n", *padded);
	printf("shim_full_size=%lu\n", *learned);
}

static void fill(unsigned char *bytes, size_t count, unsigned char seed)
{
	for (size_t i = 0; i < count; i++)
		bytes[i] = (unsigned char)(seed ^ (i * 37));
}

static int set_round_trip(size_t length)
{
	pid_t child = stopped_child();
	size_t full = ptrace_full_size(child, state);
	if (length == 0)
		length = full;
	printf("full=%zu\nlength=%zu\n", full, length);
	if (length > full || length < XSAVE_HEADER_OFFSET + 64 || length % 8 != 0) {
		fprintf(stderr, "xstate_probe: LEN must be a multiple of 8 in [576, %zu]\n", full);
		end_child(child);
		return 2;
	}

	/* Seed: a register component past the prefix, set through a full-size SETREGSET. */
	unsigned int tail_offset = 0, tail_size = 0;
	int tail = register_component_after(length, full, &tail_offset, &tail_size);
	printf("tail_component=%d\n", tail);
	if (tail != 0) {
		uint64_t features;
		fill(state + tail_offset, tail_size, 0xa5);
		memcpy(&features, state + XSAVE_HEADER_OFFSET, sizeof features);
		features |= 1ULL << tail;
		memcpy(state + XSAVE_HEADER_OFFSET, &features, sizeof features);
		size_t whole = full;
		long seeded = xstate(PTRACE_SETREGSET, child, state, &whole);
		printf("seed_rc=%ld\nseed_errno=%d\n", seeded, seeded ? errno : 0);
	}

	/* The caller's view: LEN bytes read, XMM15 changed, LEN bytes written. */
	size_t got = length;
	long read_rc = xstate(PTRACE_GETREGSET, child, sent, &got);
	printf("get_rc=%ld\nget_length=%zu\n", read_rc, got);
	fill(sent + XMM15_OFFSET, 16, 0x5a);
	uint64_t features;
	memcpy(&features, sent + XSAVE_HEADER_OFFSET, sizeof features);
	features |= 1ULL << XFEATURE_SSE;
	memcpy(sent + XSAVE_HEADER_OFFSET, &features, sizeof features);
	size_t put = length;
	long set_rc = xstate(PTRACE_SETREGSET, child, sent, &put);
	printf("set_rc=%ld\nset_errno=%d\nset_length=%zu\n", set_rc, set_rc ? errno : 0, put);

	size_t back = full;
	if (xstate(PTRACE_GETREGSET, child, readback, &back) != 0 || back != full)
		give_up("reading the state back");
	printf("prefix_round_trip=%s\n", memcmp(readback, sent, length) == 0 ? "yes" : "no");
	if (tail != 0)
		printf("tail_kept=%s\n",
		       memcmp(readback + tail_offset, state + tail_offset, tail_size) == 0 ? "yes"
											   : "no");
	end_child(child);
	print_shim_counters();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "facts") == 0)
		return facts();
	if (argc == 3 && strcmp(argv[1], "set") == 0)
		return set_round_trip(strtoul(argv[2], NULL, 10));
	fprintf(stderr, "usage: xstate_probe facts | xstate_probe set LEN\n");
	return 2;
}
