# The architecture sweep (issue 15, docs/architectures.md): tests/archs/sweep/sweep.cpp over every
# random-weight GGUF that llama.cpp's test-llama-archs writes (scripts/archs.sh builds that one
# program from the pinned source into the cache and writes the models there, once), plus
# tiny-rwkv7 for RWKV.
#   archs.models  builds the generator and writes the models when missing (~40 s cold on 2 cores);
#   archs.sweep   every architecture × variant (~10 s on one thread): part of `make test`; fails
#                 on a check that fails for an architecture that is not refused at load, on a
#                 stale refusal, below 90 % ✓, and when docs/architectures.md differs from the
#                 table it writes (build/architectures.md).
# Both carry the label "archs" (`ctest -L archs`).
# test_archs: the block components on llama, phi2 and the MoE models (tests/archs/*.cpp).
file(GLOB PM_ARCHS_TESTS CONFIGURE_DEPENDS tests/archs/*.cpp)
add_executable(test_archs ${PM_ARCHS_TESTS})
target_link_libraries(test_archs PRIVATE phasemap_test_support phasemap_capture phasemap_modelgen phasemap_store GTest::gtest GTest::gtest_main)
get_filename_component(PM_ARCHS_MODELS "${PHASEMAP_LLAMA_SRC}/../archs-models" ABSOLUTE)
target_compile_definitions(test_archs PRIVATE PHASEMAP_ARCHS_MODELS="${PM_ARCHS_MODELS}")
gtest_discover_tests(test_archs DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 900 ENVIRONMENT "${PM_TEST_ENV}"
  FIXTURES_REQUIRED pm_archs_models LABELS archs SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")

add_executable(archs_sweep tests/archs/sweep/sweep.cpp)
target_link_libraries(archs_sweep PRIVATE phasemap_test_support phasemap_capture)
set(PM_ARCHS_SH bash ${CMAKE_SOURCE_DIR}/scripts/archs.sh ${PHASEMAP_LLAMA_SRC} ${PHASEMAP_LLAMA_BUILD})
add_test(NAME archs.models COMMAND ${PM_ARCHS_SH})
set_tests_properties(archs.models PROPERTIES FIXTURES_SETUP pm_archs_models TIMEOUT 1800 LABELS archs)
set(PM_ARCHS_EXTRA)
if(EXISTS ${CMAKE_SOURCE_DIR}/../shared/models/tiny-rwkv7-834K.gguf)
  set(PM_ARCHS_EXTRA --extra ${CMAKE_SOURCE_DIR}/../shared/models/tiny-rwkv7-834K.gguf
    --check-doc ${CMAKE_SOURCE_DIR}/docs/architectures.md)
endif()
if(PHASEMAP_SANITIZE)
  # Under ASan/UBSan (make test-asan) a fixed subset — dense llama, MoE, parallel block, GELU,
  # recurrent, hybrid, a refused one — exercises the same capture paths at a fraction of the time.
  add_test(NAME archs.sweep COMMAND ${PM_ARCHS_SH} --sweep $<TARGET_FILE:archs_sweep> --min-pass 0.8
    --only "^(llama|qwen3moe|phi2|gpt2|mamba2|granitehybrid|plamo3)-")
else()
  add_test(NAME archs.sweep COMMAND ${PM_ARCHS_SH} --sweep $<TARGET_FILE:archs_sweep> ${PM_ARCHS_EXTRA}
    --doc ${CMAKE_BINARY_DIR}/architectures.md)
endif()
set_tests_properties(archs.sweep PROPERTIES FIXTURES_REQUIRED pm_archs_models TIMEOUT 900 LABELS archs
  ENVIRONMENT "${PM_TEST_ENV}")
