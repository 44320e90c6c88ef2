# The architecture sweep (issue 15, docs/architectures.md): tests/archs/sweep.cpp over every
# random-weight GGUF that llama.cpp's test-llama-archs writes (scripts/archs.sh builds that one
# program from the pinned source into the cache and writes the models there, once), plus
# tiny-rwkv7 for RWKV.
#   archs.models  builds the generator and writes the models when missing (~40 s cold on 2 cores);
#   archs.sweep   every architecture × variant (~10 s on one thread): part of `make test`; fails
#                 on a check that fails for an architecture that is not refused at load, on a
#                 stale refusal, below 90 % ✓, and when docs/architectures.md differs from the
#                 table it writes (build/architectures.md).
# Both carry the label "archs" (`ctest -L archs`).
add_executable(archs_sweep tests/archs/sweep.cpp)
target_link_libraries(archs_sweep PRIVATE phasemap_test_support phasemap_capture)
set(PM_ARCHS_SH bash ${CMAKE_SOURCE_DIR}/scripts/archs.sh ${PHASEMAP_LLAMA_SRC} ${PHASEMAP_LLAMA_BUILD})
add_test(NAME archs.models COMMAND ${PM_ARCHS_SH})
set_tests_properties(archs.models PROPERTIES FIXTURES_SETUP pm_archs_models TIMEOUT 1800 LABELS archs)
set(PM_ARCHS_EXTRA)
if(EXISTS ${CMAKE_SOURCE_DIR}/../shared/models/tiny-rwkv7-834K.gguf)
  set(PM_ARCHS_EXTRA --extra ${CMAKE_SOURCE_DIR}/../shared/models/tiny-rwkv7-834K.gguf
    --check-doc ${CMAKE_SOURCE_DIR}/docs/architectures.md)
endif()
add_test(NAME archs.sweep COMMAND ${PM_ARCHS_SH} --sweep $<TARGET_FILE:archs_sweep> ${PM_ARCHS_EXTRA}
  --doc ${CMAKE_BINARY_DIR}/architectures.md)
set_tests_properties(archs.sweep PROPERTIES FIXTURES_REQUIRED pm_archs_models TIMEOUT 900 LABELS archs
  ENVIRONMENT "${PM_TEST_ENV}")
