// Runs a test body once per instruction set the metric kernels are built for and this CPU runs
// (kernels::use_isa), then goes back to the widest.
#pragma once
#include <gtest/gtest.h>

#include <cstddef>

#include "phasemap/metrics/kernels.hpp"

namespace phasemap::metrics::testing {

template <class F>
void for_each_isa(F f) {
    std::size_t ran = 0;
    for (const char* isa : {"base", "x86-64-v3", "x86-64-v4"}) {
        if (!kernels::use_isa(isa)) continue;
        SCOPED_TRACE(isa);
        ASSERT_EQ(kernels::isa(), isa);
        f();
        ++ran;
    }
    ASSERT_TRUE(kernels::use_isa("widest"));
    EXPECT_GE(ran, 1u);  // base at least
}

}  // namespace phasemap::metrics::testing
