# FindSOCI: SOCI (https://soci.sourceforge.net), for distributions that ship no CMake config
# (Debian 12's libsoci-dev 4.0.3 has neither a config file nor a .pc file).
#
# Components: core (always), sqlite3, postgresql. Imported targets:
#   SOCI::core        soci_core; its headers need Boost (built with SOCI_HAVE_BOOST)
#   SOCI::sqlite3     soci_sqlite3 + SQLite3::SQLite3
#   SOCI::postgresql  soci_postgresql + PostgreSQL's libpq (its header includes libpq-fe.h)
# Result variables: SOCI_FOUND, SOCI_INCLUDE_DIR, SOCI_VERSION, SOCI_<component>_FOUND.

include(FindPackageHandleStandardArgs)

find_path(SOCI_INCLUDE_DIR NAMES soci/soci.h)
find_library(SOCI_core_LIBRARY NAMES soci_core)

if(SOCI_INCLUDE_DIR AND EXISTS "${SOCI_INCLUDE_DIR}/soci/version.h")
  file(STRINGS "${SOCI_INCLUDE_DIR}/soci/version.h" _soci_version_line
       REGEX "^#define SOCI_VERSION [0-9]+")
  string(REGEX REPLACE "^#define SOCI_VERSION ([0-9]+).*" "\\1" _soci_version_number
         "${_soci_version_line}")
  math(EXPR _soci_major "${_soci_version_number} / 100000")
  math(EXPR _soci_minor "${_soci_version_number} / 100 % 1000")
  math(EXPR _soci_patch "${_soci_version_number} % 100")
  set(SOCI_VERSION "${_soci_major}.${_soci_minor}.${_soci_patch}")
endif()

# SOCI's headers include Boost headers when SOCI was built with Boost.
set(_soci_needs_boost FALSE)
if(SOCI_INCLUDE_DIR AND EXISTS "${SOCI_INCLUDE_DIR}/soci/soci-config.h")
  file(STRINGS "${SOCI_INCLUDE_DIR}/soci/soci-config.h" _soci_boost_line
       REGEX "^#define SOCI_HAVE_BOOST$")
  if(_soci_boost_line)
    set(_soci_needs_boost TRUE)
  endif()
endif()
set(_soci_core_ready ${SOCI_core_LIBRARY})
if(_soci_needs_boost)
  find_package(Boost QUIET)
  if(NOT Boost_FOUND)
    if(NOT SOCI_FIND_QUIETLY)
      message(STATUS "SOCI: its headers need Boost (Debian: libboost-dev), which was not found")
    endif()
    set(_soci_core_ready FALSE)
  endif()
endif()
if(_soci_core_ready)
  set(SOCI_core_FOUND TRUE)
endif()

foreach(_soci_component IN LISTS SOCI_FIND_COMPONENTS)
  if(_soci_component STREQUAL "core")
    continue()
  elseif(_soci_component STREQUAL "sqlite3")
    find_library(SOCI_sqlite3_LIBRARY NAMES soci_sqlite3)
    find_package(SQLite3 QUIET)
    if(SOCI_sqlite3_LIBRARY AND SQLite3_FOUND AND SOCI_core_FOUND)
      set(SOCI_sqlite3_FOUND TRUE)
    endif()
  elseif(_soci_component STREQUAL "postgresql")
    find_library(SOCI_postgresql_LIBRARY NAMES soci_postgresql)
    find_package(PostgreSQL QUIET)
    if(SOCI_postgresql_LIBRARY AND PostgreSQL_FOUND AND SOCI_core_FOUND)
      set(SOCI_postgresql_FOUND TRUE)
    endif()
  else()
    message(FATAL_ERROR "FindSOCI: unknown component '${_soci_component}'")
  endif()
endforeach()

find_package_handle_standard_args(SOCI
  REQUIRED_VARS SOCI_core_LIBRARY SOCI_INCLUDE_DIR _soci_core_ready
  VERSION_VAR SOCI_VERSION
  HANDLE_COMPONENTS)

if(SOCI_FOUND AND NOT TARGET SOCI::core)
  add_library(SOCI::core UNKNOWN IMPORTED)
  set_target_properties(SOCI::core PROPERTIES
    IMPORTED_LOCATION "${SOCI_core_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${SOCI_INCLUDE_DIR}")
  if(_soci_needs_boost)
    target_link_libraries(SOCI::core INTERFACE Boost::headers)
  endif()
  # soci_core loads backends by name with dlopen.
  target_link_libraries(SOCI::core INTERFACE ${CMAKE_DL_LIBS})
endif()
if(SOCI_sqlite3_FOUND AND NOT TARGET SOCI::sqlite3)
  add_library(SOCI::sqlite3 UNKNOWN IMPORTED)
  set_target_properties(SOCI::sqlite3 PROPERTIES IMPORTED_LOCATION "${SOCI_sqlite3_LIBRARY}")
  target_link_libraries(SOCI::sqlite3 INTERFACE SOCI::core SQLite::SQLite3)
endif()
if(SOCI_postgresql_FOUND AND NOT TARGET SOCI::postgresql)
  add_library(SOCI::postgresql UNKNOWN IMPORTED)
  set_target_properties(SOCI::postgresql PROPERTIES IMPORTED_LOCATION "${SOCI_postgresql_LIBRARY}")
  target_link_libraries(SOCI::postgresql INTERFACE SOCI::core PostgreSQL::PostgreSQL)
endif()

mark_as_advanced(SOCI_INCLUDE_DIR SOCI_core_LIBRARY SOCI_sqlite3_LIBRARY SOCI_postgresql_LIBRARY)
