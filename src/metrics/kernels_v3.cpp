// The row kernels for x86-64-v3, compiled with -march=x86-64-v3 (CMakeLists.txt) where
// PHASEMAP_ISA_KERNELS is defined; empty elsewhere.
#if defined(PHASEMAP_ISA_KERNELS)
#define PM_KERNELS_NS v3
#include "kernels_impl.hpp"
#endif
