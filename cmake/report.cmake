# report: `phasemap report` (one self-contained HTML page of Vega-Lite figures) — src/report,
# src/report/assets/ (template, figure specs, Node exporter), tests/report.
# The pinned vega / vega-lite / vega-embed bundles come from scripts/deps.sh
# (PHASEMAP_REPORT_ASSETS); without them the module is left out with a warning.
set(PHASEMAP_REPORT_ASSETS "" CACHE PATH "vega, vega-lite, vega-embed bundles (scripts/deps.sh)")
if(NOT PHASEMAP_REPORT_ASSETS)
  # Builds configured without the Makefile: deps.sh's cache location.
  if(DEFINED ENV{PHASEMAP_CACHE})
    set(_pm_cache "$ENV{PHASEMAP_CACHE}")
  elseif(DEFINED ENV{XDG_CACHE_HOME})
    set(_pm_cache "$ENV{XDG_CACHE_HOME}/phasemap")
  else()
    set(_pm_cache "$ENV{HOME}/.cache/phasemap")
  endif()
  file(GLOB _pm_assets LIST_DIRECTORIES true "${_pm_cache}/report-assets-*")
  if(_pm_assets)
    list(SORT _pm_assets)
    list(GET _pm_assets -1 _pm_found)
    set(PHASEMAP_REPORT_ASSETS "${_pm_found}" CACHE PATH "vega, vega-lite, vega-embed bundles (scripts/deps.sh)" FORCE)
  endif()
endif()
set(_pm_report_files
  "${PHASEMAP_REPORT_ASSETS}/vega.min.js" "${PHASEMAP_REPORT_ASSETS}/vega-lite.min.js" "${PHASEMAP_REPORT_ASSETS}/vega-embed.min.js")
foreach(f ${_pm_report_files})
  if(NOT EXISTS "${f}")
    message(WARNING "report: ${f} not found (run scripts/deps.sh); `phasemap report` is not built")
    set_source_files_properties(src/cli/cmd_report.cpp TARGET_DIRECTORY phasemap PROPERTIES HEADER_FILE_ONLY ON)
    return()
  endif()
endforeach()

set(_pm_report_local "${CMAKE_SOURCE_DIR}/src/report/assets/template.html" "${CMAKE_SOURCE_DIR}/src/report/assets/report.js"
  "${CMAKE_SOURCE_DIR}/src/report/assets/export.js")
file(GLOB PM_REPORT_SRC CONFIGURE_DEPENDS src/report/*.cpp)
add_library(phasemap_report STATIC ${PM_REPORT_SRC})
target_include_directories(phasemap_report PUBLIC include)
target_link_libraries(phasemap_report PUBLIC nlohmann_json::nlohmann_json phasemap_metrics phasemap_stats PRIVATE phasemap_audit phasemap_steer phasemap_io fmt::fmt)
target_compile_definitions(phasemap_report PRIVATE
  PM_ASSET_VEGA="${PHASEMAP_REPORT_ASSETS}/vega.min.js"
  PM_ASSET_VEGA_LITE="${PHASEMAP_REPORT_ASSETS}/vega-lite.min.js"
  PM_ASSET_VEGA_EMBED="${PHASEMAP_REPORT_ASSETS}/vega-embed.min.js"
  PM_ASSET_TEMPLATE="${CMAKE_SOURCE_DIR}/src/report/assets/template.html"
  PM_ASSET_REPORT_JS="${CMAKE_SOURCE_DIR}/src/report/assets/report.js"
  PM_ASSET_EXPORT_JS="${CMAKE_SOURCE_DIR}/src/report/assets/export.js")
set_source_files_properties(src/report/assets.cpp PROPERTIES OBJECT_DEPENDS "${_pm_report_files};${_pm_report_local}")
target_link_libraries(phasemap PRIVATE phasemap_report)
# `phasemap report DB`: the store's panel table and the audit library (modules included before this one).

pm_test(report phasemap_report phasemap_audit)
if(TARGET test_report)
  add_dependencies(test_report phasemap)
  target_compile_definitions(test_report PRIVATE PHASEMAP_REPORT_TEST_OUT="${CMAKE_BINARY_DIR}/report-test")
endif()
# `phasemap report DB`: the store's panel table and the audit library (modules included before this one).
if(TARGET phasemap_store AND TARGET phasemap_audit)
  target_compile_definitions(phasemap PRIVATE PHASEMAP_REPORT_DB=1)
  # report::write_report (src/report/driver.cpp) reads the DB through the store.
  target_compile_definitions(phasemap_report PRIVATE PHASEMAP_REPORT_DB=1)
  target_link_libraries(phasemap_report PRIVATE phasemap_store)
  if(TARGET test_report)
    target_compile_definitions(test_report PRIVATE PHASEMAP_REPORT_DB=1)
    # Synthetic results DBs (hand-made token_layers rows) for the layer-profile tests.
    target_link_libraries(test_report PRIVATE phasemap_store phasemap_metrics)
  endif()
endif()
