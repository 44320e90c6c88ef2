# Compiler cache for repeated clean builds (CI clones main afresh every time): when scripts/deps.sh
# reports a cache directory and ccache is installed, every compile goes through ccache with that
# directory. BASEDIR + NOHASHDIR make hits independent of where the clone lives.
set(PHASEMAP_CCACHE_DIR "" CACHE PATH "ccache directory (scripts/deps.sh); empty = no compiler cache")
if(NOT DEFINED PM_CCACHE_BASE)
  set(PM_CCACHE_BASE ${CMAKE_SOURCE_DIR})
endif()
if(PHASEMAP_CCACHE_DIR)
  find_program(PHASEMAP_CCACHE_EXE ccache)
  if(PHASEMAP_CCACHE_EXE)
    foreach(lang C CXX)
      set(CMAKE_${lang}_COMPILER_LAUNCHER
          ${CMAKE_COMMAND} -E env CCACHE_DIR=${PHASEMAP_CCACHE_DIR} CCACHE_BASEDIR=${PM_CCACHE_BASE}
          CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=5G ${PHASEMAP_CCACHE_EXE})
    endforeach()
  endif()
endif()
