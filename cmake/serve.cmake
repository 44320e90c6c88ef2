# serve: `phasemap serve`, the OpenAI-compatible HTTP server (cpp-httplib, Debian
# libcpp-httplib-dev, its shared library through pkg-config) on the engine's continuous-batching loop.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
find_package(Threads REQUIRED)
file(GLOB PM_SERVE_SRC CONFIGURE_DEPENDS src/serve/*.cpp)
add_library(phasemap_serve STATIC ${PM_SERVE_SRC})
target_include_directories(phasemap_serve PUBLIC include)
target_link_libraries(phasemap_serve PUBLIC phasemap_capture phasemap_metrics phasemap_io
  PRIVATE PkgConfig::HTTPLIB OpenSSL::Crypto phasemap_plan phasemap_steer phasemap_panel phasemap_store nlohmann_json::nlohmann_json fmt::fmt Threads::Threads)
target_link_libraries(phasemap PRIVATE phasemap_serve)

# tests/serve: the server on a free loopback port, driven with curl (and the openai npm client
# where its pinned package is installed), compared with `phasemap generate`.
find_program(PM_CURL curl)
find_program(PM_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(PM_CURL AND PM_PYTHON)
  add_test(NAME serve.http COMMAND ${PM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/serve/test_serve.py $<TARGET_FILE:phasemap>)
  set_tests_properties(serve.http PROPERTIES TIMEOUT 300 ENVIRONMENT "${PM_TEST_ENV}" SKIP_RETURN_CODE 77)
endif()
# The official openai npm client (tests/serve/package.json, exact version, package-lock.json):
# npm ci into the build dir once (fixture), then serve.openai drives the server with it. A failed
# install fails the fixture (and so serve.openai): the npm registry is a declared source.
if(PM_PYTHON)
  add_test(NAME serve.npm_setup COMMAND bash ${CMAKE_SOURCE_DIR}/tests/serve/npm_setup.sh ${CMAKE_SOURCE_DIR}/tests/serve ${CMAKE_BINARY_DIR}/serve-npm)
  set_tests_properties(serve.npm_setup PROPERTIES FIXTURES_SETUP serve_npm TIMEOUT 300)
  add_test(NAME serve.openai COMMAND ${PM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/serve/test_openai.py $<TARGET_FILE:phasemap> ${CMAKE_BINARY_DIR}/serve-npm/node_modules)
  set_tests_properties(serve.openai PROPERTIES FIXTURES_REQUIRED serve_npm TIMEOUT 300 ENVIRONMENT "${PM_TEST_ENV}" SKIP_RETURN_CODE 77)
endif()
