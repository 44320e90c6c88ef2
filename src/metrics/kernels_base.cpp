// The row kernels for any CPU (kernels_impl.hpp).
#define PM_KERNELS_NS base
#include "kernels_impl.hpp"
