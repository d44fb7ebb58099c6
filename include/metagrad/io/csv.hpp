// metagrad/io/csv.hpp — read_csv: a numeric CSV table (an optional header line of column names, then rows
// of numbers) into a Tensor<T, 2> of shape [rows, columns]. A bad field or a ragged row is an io_error
// naming the file, the line and the column. Include <metagrad/io.hpp> instead.
#pragma once

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "detail/file_bytes.hpp"

METAGRAD_NAMESPACE_BEGIN

/// How read_csv splits a file.
struct CsvOptions {
  char delimiter = ',';  ///< field separator (',' ';' '\t' ...)
  bool header = true;    ///< the first non-blank line names the columns
};

/// A CSV table: the values, [rows, columns], and the column names (empty when the file has no header).
template <dtype T>
struct CsvTable {
  Tensor<T, 2> values;
  std::vector<std::string> columns;
};

namespace detail {

struct CsvField {
  std::string text;
  std::size_t column;  // 1-based character column where the field starts, for messages
};

// Splits one line into fields. A field may be double-quoted ("a,b", with "" for a quote inside); quoted
// fields do not span lines. Unquoted fields are trimmed of spaces (and tabs unless tab is the delimiter).
inline std::vector<CsvField> split_csv_line(std::string_view line, char delim, const std::string& where) {
  std::vector<CsvField> out;
  const auto blank = [&](char c) { return c == ' ' || (c == '\t' && delim != '\t'); };
  std::size_t i = 0;
  for (;;) {
    while (i < line.size() && blank(line[i])) ++i;
    CsvField f{{}, i + 1};
    if (i < line.size() && line[i] == '"') {
      const std::size_t open = i++;
      for (;;) {
        if (i >= line.size())
          throw io_error(where + ", column " + std::to_string(open + 1) + ": unterminated quoted field");
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            f.text += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        f.text += line[i++];
      }
      while (i < line.size() && blank(line[i])) ++i;
      if (i < line.size() && line[i] != delim)
        throw io_error(where + ", column " + std::to_string(i + 1) + ": text after the closing quote of a field");
    } else {
      const std::size_t start = i;
      while (i < line.size() && line[i] != delim) ++i;
      std::size_t end = i;
      while (end > start && blank(line[end - 1])) --end;
      f.text.assign(line.substr(start, end - start));
    }
    out.push_back(std::move(f));
    if (i >= line.size()) return out;
    ++i;  // the delimiter; a delimiter at the very end makes one more (empty) field
  }
}

// std::errc() on success, result_out_of_range for a number T cannot hold, invalid_argument otherwise.
template <class T>
std::errc parse_csv_number(std::string_view s, T& out) {
  // from_chars takes no leading '+', which spreadsheets write.
  if (!s.empty() && s[0] == '+' && s.size() > 1 && s[1] != '-') s.remove_prefix(1);
  if (s.empty()) return std::errc::invalid_argument;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec == std::errc::result_out_of_range) return ec;
  return ec == std::errc() && end == s.data() + s.size() ? std::errc() : std::errc::invalid_argument;
}

}  // namespace detail

/// Reads a numeric CSV file into a [rows, columns] tensor of T (float, double, int32_t or int64_t).
///
/// Fields are numbers as std::from_chars reads them (decimal or scientific; "nan" and "inf" for floating
/// types; integers only for integer types), optionally quoted and surrounded by spaces. Blank lines are
/// skipped, CRLF line ends and a UTF-8 byte-order mark are accepted, a ".gz" file is decompressed first. A
/// file with a header and no rows gives a [0, columns] tensor; an empty file without a header gives [0, 0].
/// @throws io_error naming the file, the line and the column on: a field that is not a number of type T
/// (empty, text, fractional for an integer type, out of range), a row with a different number of fields
/// than the first (ragged), a malformed quoted field, a missing header, or an unreadable file.
template <dtype T = float>
CsvTable<T> read_csv(const std::filesystem::path& path, CsvOptions options = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int32_t> ||
                    std::is_same_v<T, std::int64_t>,
                "metagrad: read_csv reads numbers: float, double, int32_t or int64_t");
  if (options.delimiter == '"' || options.delimiter == '\n' || options.delimiter == '\r')
    throw io_error("read_csv: " + detail::quoted_path(path) + ": a quote or line break cannot be the delimiter");
  const detail::Bytes bytes = detail::read_maybe_gzip(path, "read_csv");
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);

  CsvTable<T> table;
  std::vector<T> values;
  std::size_t ncols = 0, first_line = 0;
  index_t rows = 0;
  bool have_width = false;
  std::size_t line_no = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    const std::string where = "read_csv: " + detail::quoted_path(path) + " line " + std::to_string(line_no);
    auto fields = detail::split_csv_line(line, options.delimiter, where);
    if (!have_width) {
      ncols = fields.size();
      first_line = line_no;
      have_width = true;
      if (options.header) {
        for (auto& f : fields) table.columns.push_back(std::move(f.text));
        continue;
      }
    } else if (fields.size() != ncols) {
      throw io_error(where + ": " + std::to_string(fields.size()) + " fields where line " + std::to_string(first_line) +
                     " has " + std::to_string(ncols) + " (ragged row)");
    }
    for (std::size_t c = 0; c < fields.size(); ++c) {
      T v{};
      if (const std::errc ec = detail::parse_csv_number(fields[c].text, v); ec != std::errc()) {
        std::string col = "column " + std::to_string(c + 1);
        if (options.header) col += " ('" + table.columns[c] + "')";
        const std::string why = fields[c].text.empty() ? std::string("empty field")
                                : ec == std::errc::result_out_of_range
                                    ? "'" + fields[c].text + "' is out of range for " + dtype_name<T>()
                                    : "'" + fields[c].text + "' is not a number of type " + dtype_name<T>();
        throw io_error(where + ", " + col + " (character " + std::to_string(fields[c].column) + "): " + why);
      }
      values.push_back(v);
    }
    ++rows;
  }
  if (options.header && !have_width)
    throw io_error("read_csv: " + detail::quoted_path(path) + ": empty file, expected a header line of column names");
  table.values.allocate(Shape<2>{rows, static_cast<index_t>(ncols)});
  std::copy(values.begin(), values.end(), table.values.data());
  return table;
}

METAGRAD_NAMESPACE_END
