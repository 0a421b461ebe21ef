/* Preloaded by `python -m benchmarks.emulate_avx2`: this process and its children see, through
 * the CPUID instruction, a CPU with AVX2 but neither AVX-512 nor VNNI, as ONNX Runtime's MLAS
 * dispatch (`onnxruntime/core/mlas/lib/platform.cpp`) reads it, so it picks its AVX2 kernels.
 *
 * Linux CPUID faulting (`arch_prctl(ARCH_SET_CPUID, 0)`, CPU flag `cpuid_fault`) turns each CPUID
 * into SIGSEGV; the handler runs the real CPUID with faulting off for that one instruction, clears
 * the AVX-512 and VNNI bits of leaf 7 and steps over it. Faulting is reset by execve, so the
 * constructor sets it again in every program that this library is preloaded into. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* Leaf 7 subleaf 0: EBX AVX512F, DQ, IFMA, PF, ER, CD, BW, VL; ECX VBMI, VBMI2, VNNI, BITALG,
 * VPOPCNTDQ; EDX 4VNNIW, 4FMAPS, VP2INTERSECT, FP16, AMX-BF16, AMX-TILE, AMX-INT8. */
#define LEAF7_EBX 0xDC230000u
#define LEAF7_ECX 0x00005842u
#define LEAF7_EDX 0x03C0010Cu
/* Leaf 7 subleaf 1: EAX AVX-VNNI, AVX512_BF16; EDX AVX-VNNI-INT8. */
#define LEAF7_1_EAX 0x00000030u
#define LEAF7_1_EDX 0x00000010u

static void emulate_cpuid(int signal_number, siginfo_t *info, void *context) {
    (void)info;
    greg_t *regs = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* a real fault: let it crash as it would */
        signal(signal_number, SIG_DFL);
        return;
    }
    unsigned leaf = (unsigned)regs[REG_RAX], sub = (unsigned)regs[REG_RCX], a, b, c, d;
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, a, b, c, d);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    if (leaf == 7 && sub == 0) {
        b &= ~LEAF7_EBX;
        c &= ~LEAF7_ECX;
        d &= ~LEAF7_EDX;
    } else if (leaf == 7 && sub == 1) {
        a &= ~LEAF7_1_EAX;
        d &= ~LEAF7_1_EDX;
    }
    regs[REG_RAX] = a;
    regs[REG_RBX] = b;
    regs[REG_RCX] = c;
    regs[REG_RDX] = d;
    regs[REG_RIP] += 2; /* CPUID is 0F A2 */
}

__attribute__((constructor)) static void start(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = emulate_cpuid;
    action.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &action, NULL);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        static const char message[] = "cpuid_avx2: this CPU or kernel has no CPUID faulting\n";
        write(2, message, sizeof message - 1);
        _exit(3);
    }
}
