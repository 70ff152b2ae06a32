/*
 * Test-only LD_PRELOAD library: what an AMX host does to user-mode-linux, on any x86-64 host.
 *
 * Every PTRACE_SETREGSET NT_X86_XSTATE longer than HYBRIDNET_XSTATE_CUT_BYTES goes on with
 * its length cut to that many bytes (on a copy of the caller's iovec). Cut below the host's
 * XSAVE size, UML's fixed buffer becomes too short for this host exactly as 2,696 bytes are
 * for an AMX host's 11,008, and the kernel answers EFAULT. Preloaded in front of
 * uml_xstate_shim.so, it shows the shim turning that into a boot; alone, the panic.
 *
 * Built at test time by tests/netns/native.py.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef long (*ptrace_fn)(enum __ptrace_request, ...);

static ptrace_fn next_ptrace;
static size_t cut_bytes;

__attribute__((constructor)) static void set_up(void)
{
	void *symbol = dlsym(RTLD_NEXT, "ptrace");
	memcpy(&next_ptrace, &symbol, sizeof symbol);
	const char *cut = getenv("HYBRIDNET_XSTATE_CUT_BYTES");
	cut_bytes = cut == NULL ? 0 : strtoul(cut, NULL, 10);
}

long ptrace(enum __ptrace_request request, ...)
{
	va_list args;
	va_start(args, request);
	pid_t pid = va_arg(args, pid_t);
	void *addr = va_arg(args, void *);
	void *data = va_arg(args, void *);
	va_end(args);

	if (request == PTRACE_SETREGSET && (uintptr_t)addr == NT_X86_XSTATE && data != NULL &&
	    cut_bytes != 0) {
		struct iovec cut = *(const struct iovec *)data;
		if (cut.iov_len > cut_bytes)
			cut.iov_len = cut_bytes;
		return next_ptrace(request, pid, addr, &cut);
	}
	return next_ptrace(request, pid, addr, data);
}
