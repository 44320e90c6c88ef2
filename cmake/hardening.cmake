# Hardening suite (issue 8, docs/hardening.md): parser contracts on the fuzz seed corpora and
# regression inputs, replication checks, and the bad-input corpus through the CLI. Included by
# CMakeLists.txt. The long parts live behind their own entry points: `make test-asan`
# (scripts/test-asan.sh), `make fuzz` (scripts/fuzz.sh, fuzz/CMakeLists.txt), `make bench`
# (bench/run.sh) and scripts/torture.sh.
pm_test(hardening phasemap_capture phasemap_io phasemap_metrics)
if(TARGET test_hardening)
  # The fuzz harnesses, linked as plain functions: the tests replay every seed and regression input.
  target_sources(test_hardening PRIVATE ${CMAKE_SOURCE_DIR}/fuzz/harness.cpp)
  target_include_directories(test_hardening PRIVATE ${CMAKE_SOURCE_DIR}/fuzz)
  add_dependencies(test_hardening phasemap)
  # The control-vector harness: src/capture/cvec.cpp is in phasemap_capture (with ggml).
  target_compile_definitions(test_hardening PRIVATE PM_FUZZ_CVEC)
  # The manifest and hypothesis-file harnesses when those modules are part of the build.
  if(TARGET phasemap_panel)
    target_link_libraries(test_hardening PRIVATE phasemap_panel)
    target_compile_definitions(test_hardening PRIVATE PM_FUZZ_PANEL)
  endif()
  if(TARGET phasemap_audit)
    target_link_libraries(test_hardening PRIVATE phasemap_audit)
    target_compile_definitions(test_hardening PRIVATE PM_FUZZ_AUDIT)
  endif()
endif()

# Crash/resume torture of `phasemap panel run` (tests/hardening/torture): its own executable, run
# by ctest with the acceptance setting (10 seeded SIGKILL rounds, ~15 s) and by scripts/torture.sh
# with more rounds or other seeds.
if(TARGET phasemap_panel AND TARGET phasemap_store)
  add_executable(test_torture tests/hardening/torture/test_torture.cpp tests/hardening/torture/test_crash_points.cpp)
  target_link_libraries(test_torture PRIVATE phasemap_test_support phasemap_store phasemap_modelgen GTest::gtest GTest::gtest_main)
  target_compile_definitions(test_torture PRIVATE PM_HAVE_PANEL)
  add_dependencies(test_torture phasemap)
  add_test(NAME hardening.torture COMMAND test_torture --gtest_filter=Torture*)
  set_tests_properties(hardening.torture PROPERTIES TIMEOUT 900
                       ENVIRONMENT "PM_TORTURE_ROUNDS=10;PM_TORTURE_SEED=20240521;${PM_TEST_ENV}")
  # Fault injection at every named commit point (PHASEMAP_CRASH_AT): only when the crash points
  # are compiled in (cmake/store.cmake).
  if(PHASEMAP_CRASH_POINTS)
    target_compile_definitions(test_torture PRIVATE PM_CRASH_POINTS)
    add_test(NAME hardening.crash_points COMMAND test_torture --gtest_filter=CrashPoints.*)
    set_tests_properties(hardening.crash_points PROPERTIES TIMEOUT 900 ENVIRONMENT "${PM_TEST_ENV}")
  endif()
endif()

# Bad-input corpus: one declarative case per file under tests/bad-inputs/cases, one runner.
find_program(PM_HARDENING_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
add_test(NAME hardening.bad_inputs
         COMMAND ${PM_HARDENING_PYTHON} ${CMAKE_SOURCE_DIR}/tests/bad-inputs/run.py
                 --phasemap $<TARGET_FILE:phasemap> --cases ${CMAKE_SOURCE_DIR}/tests/bad-inputs/cases
                 --source-dir ${CMAKE_SOURCE_DIR})
set_tests_properties(hardening.bad_inputs PROPERTIES TIMEOUT 300 ENVIRONMENT "${PM_TEST_ENV}")
# The size-from-input cases again, each under prlimit --as=2G --fsize=64M (issue 17).
if(PHASEMAP_SANITIZE)
  set(PM_RESOURCE_MODE --resource-limits --sanitized)
else()
  set(PM_RESOURCE_MODE --resource-limits)
endif()
add_test(NAME hardening.bad_inputs_resources
         COMMAND ${PM_HARDENING_PYTHON} ${CMAKE_SOURCE_DIR}/tests/bad-inputs/run.py ${PM_RESOURCE_MODE}
                 --phasemap $<TARGET_FILE:phasemap> --cases ${CMAKE_SOURCE_DIR}/tests/bad-inputs/cases
                 --source-dir ${CMAKE_SOURCE_DIR})
set_tests_properties(hardening.bad_inputs_resources PROPERTIES TIMEOUT 300 ENVIRONMENT "${PM_TEST_ENV}")
# Every writing verb with a full disk (RLIMIT_FSIZE) and with SIGINT/SIGTERM before its commit:
# nothing under the final name, no temporary left (issue 17).
add_test(NAME hardening.writers
         COMMAND ${PM_HARDENING_PYTHON} ${CMAKE_SOURCE_DIR}/tests/bad-inputs/writers.py
                 --phasemap $<TARGET_FILE:phasemap> --source-dir ${CMAKE_SOURCE_DIR})
set_tests_properties(hardening.writers PROPERTIES TIMEOUT 600 ENVIRONMENT "${PM_TEST_ENV}")
