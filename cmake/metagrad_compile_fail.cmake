# metagrad_compile_fail.cmake — CTest driver for one compile-must-fail test (see tests/compile_fail/README.md).
#
#   cmake -D SOURCE=<file.cpp> -D TARGET=<object target> -D BUILD_DIR=<build tree> [-D CONFIG=<config>]
#         [-D USE_COMPILE_COMMANDS=ON|OFF] -P metagrad_compile_fail.cmake
#
# The first line of SOURCE is `// expect: <regex>`. The test passes only when compiling SOURCE fails AND the
# compiler output matches <regex> (CMake regex syntax). With USE_COMPILE_COMMANDS the compiler is run
# directly with the command CMake recorded for SOURCE in BUILD_DIR/compile_commands.json; otherwise TARGET is
# built through the build tool.
cmake_minimum_required(VERSION 3.21)

foreach(_var IN ITEMS SOURCE TARGET BUILD_DIR)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "metagrad_compile_fail.cmake: -D ${_var}=... is required")
  endif()
endforeach()

file(READ "${SOURCE}" _head LIMIT 4096)
string(FIND "${_head}" "\n" _eol)
if(_eol GREATER -1)
  string(SUBSTRING "${_head}" 0 ${_eol} _first)
else()
  set(_first "${_head}")
endif()
string(REGEX REPLACE "[ \t\r]+$" "" _first "${_first}")
set(_prefix "// expect: ")
string(LENGTH "${_prefix}" _prefix_len)
string(SUBSTRING "${_first}" 0 ${_prefix_len} _got_prefix)
if(NOT _got_prefix STREQUAL _prefix)
  message(FATAL_ERROR "${SOURCE}: the first line must be `// expect: <regex>`, got: ${_first}")
endif()
string(SUBSTRING "${_first}" ${_prefix_len} -1 _expect)
if(_expect STREQUAL "")
  message(FATAL_ERROR "${SOURCE}: empty regex after `// expect:`")
endif()

set(_command "")
if(USE_COMPILE_COMMANDS AND EXISTS "${BUILD_DIR}/compile_commands.json")
  file(READ "${BUILD_DIR}/compile_commands.json" _db)
  string(JSON _n LENGTH "${_db}")
  file(REAL_PATH "${SOURCE}" _source_real)
  if(_n GREATER 0)
    math(EXPR _last "${_n} - 1")
    foreach(_i RANGE ${_last})
      string(JSON _file GET "${_db}" ${_i} file)
      string(JSON _dir GET "${_db}" ${_i} directory)
      if(NOT IS_ABSOLUTE "${_file}")
        set(_file "${_dir}/${_file}")
      endif()
      file(REAL_PATH "${_file}" _file_real)
      if(_file_real STREQUAL _source_real)
        string(JSON _command_line GET "${_db}" ${_i} command)
        separate_arguments(_command UNIX_COMMAND "${_command_line}")
        set(_workdir "${_dir}")
        break()
      endif()
    endforeach()
  endif()
endif()

if(_command)
  string(JOIN " " _shown ${_command})
  execute_process(COMMAND ${_command}
    WORKING_DIRECTORY "${_workdir}"
    RESULT_VARIABLE _rc
    OUTPUT_VARIABLE _out
    ERROR_VARIABLE _out)
else()
  set(_config_args "")
  if(CONFIG)
    set(_config_args --config "${CONFIG}")
  endif()
  string(JOIN " " _shown "${CMAKE_COMMAND}" --build "${BUILD_DIR}" --target "${TARGET}" ${_config_args})
  execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BUILD_DIR}" --target "${TARGET}" ${_config_args}
    RESULT_VARIABLE _rc
    OUTPUT_VARIABLE _out
    ERROR_VARIABLE _out)
endif()

if(_rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must fail to compile with output matching: ${_expect}\n"
                      "command: ${_shown}")
endif()
if(NOT _out MATCHES "${_expect}")
  message(FATAL_ERROR
    "${SOURCE} failed to compile, but its output does not match the expected regex\n"
    "  expect: ${_expect}\n"
    "  command: ${_shown}\n"
    "--- compiler output ---\n${_out}")
endif()
message(STATUS "${SOURCE}: compilation failed as expected (matched: ${_expect})")
