# plan: the run plan (src/plan) — front-end options → what the capture Engine and the steer
# drivers run, shared by the CLI verbs generate, replicate, control-audit, monitor-eval and by the
# panel runner (panel_run.cpp: `panel run`, Python's panel.run); and the results-DB write-back of
# control-audit / monitor-eval results (the store edge steer must not have).
file(GLOB PM_PLAN_SRC CONFIGURE_DEPENDS src/plan/*.cpp)
add_library(phasemap_plan STATIC ${PM_PLAN_SRC})
target_include_directories(phasemap_plan PUBLIC include)
target_link_libraries(phasemap_plan PUBLIC phasemap_steer phasemap_panel phasemap_store phasemap_capture phasemap_io
  nlohmann_json::nlohmann_json PRIVATE fmt::fmt)
target_link_libraries(phasemap PRIVATE phasemap_plan)
# plan::write_report (src/plan/report_run.cpp): `phasemap report` as one call; needs the report
# module (left out when its vega bundles are missing) and the audit library.
if(TARGET phasemap_report AND TARGET phasemap_audit)
  target_link_libraries(phasemap_plan PUBLIC phasemap_report PRIVATE phasemap_audit)
else()
  set_source_files_properties(src/plan/report_run.cpp TARGET_DIRECTORY phasemap_plan PROPERTIES HEADER_FILE_ONLY ON)
endif()

# The panel runner's commit points (crash_point, cmake/store.cmake).
if(PHASEMAP_CRASH_POINTS)
  target_compile_definitions(phasemap_plan PRIVATE PHASEMAP_CRASH_POINTS)
endif()

pm_test(plan phasemap_plan phasemap_steer phasemap_store phasemap_capture phasemap_metrics phasemap_io phasemap_modelgen)
if(TARGET test_plan)
  add_dependencies(test_plan phasemap)
endif()
# The verb suites of control-audit / monitor-eval read the results DB they write.
if(TARGET test_cli)
  target_link_libraries(test_cli PRIVATE phasemap_plan phasemap_store)
endif()
