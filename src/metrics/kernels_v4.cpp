// The row kernels for x86-64-v4, compiled with -march=x86-64-v4 (CMakeLists.txt) where
// PHASEMAP_ISA_KERNELS is defined; empty elsewhere.
#if defined(PHASEMAP_ISA_KERNELS)
#define PM_KERNELS_NS v4
#include "kernels_impl.hpp"
#endif
