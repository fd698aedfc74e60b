#include "runtime/cli/ini.hpp"

#include <cstdlib>
#include <iomanip>
#include <sstream>
#include <tuple>
#include <utility>

#include "runtime/core/error.hpp"

namespace longctx::cli {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string trim(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t"), last = text.find_last_not_of(" \t");
  return first == std::string::npos ? "" : text.substr(first, last - first + 1);
}

// `line` up to its comment, if it has one (the rules atop ini.hpp).
std::string strip_comment(const std::string& line) {
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '#' && line[i] != ';') continue;
    if (i == 0 || is_blank(line[i - 1])) return line.substr(0, i);
  }
  return line;
}

// The quoted value that starts at text[open] (a "), and where its closing quote is; throws a message
// for `at` when it has none.
std::pair<std::string, size_t> read_quoted(const std::string& text, size_t open, const std::string& at) {
  std::string value;
  for (size_t i = open + 1; i < text.size(); ++i) {
    if (text[i] == '"') return {value, i};
    if (text[i] == '\\' && i + 1 < text.size() && (text[i + 1] == '"' || text[i + 1] == '\\')) ++i;
    value += text[i];
  }
  throw UsageError(at + ": the quoted value has no closing \" (write \\\" for a \" inside it)");
}

}  // namespace

std::string ini_value(const std::string& value) {
  if (value.find_first_of("\r\n") != std::string::npos)
    throw UsageError("a config value cannot hold a line break: '" + value + "'");
  bool plain = value.empty() || (!is_blank(value.front()) && !is_blank(value.back()) && value.front() != '"' &&
                                 value.front() != '#' && value.front() != ';');
  for (size_t i = 1; plain && i < value.size(); ++i)
    plain = !((value[i] == '#' || value[i] == ';') && is_blank(value[i - 1]));
  if (plain) return value;
  std::string quoted = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "\"";
}

std::string double_text(double value) {
  std::string text;
  for (int digits = 6; digits <= 17; ++digits) {
    std::ostringstream out;
    out << std::setprecision(digits) << value;
    text = out.str();
    if (std::strtod(text.c_str(), nullptr) == value) break;
  }
  return text;
}

std::vector<IniEntry> parse_ini(const std::string& text, const std::string& where) {
  static const std::string bom = "\xEF\xBB\xBF";
  std::vector<IniEntry> entries;
  std::string section;
  size_t start = text.compare(0, bom.size(), bom) == 0 ? bom.size() : 0;
  for (int number = 1; start < text.size(); ++number) {
    // A line ends at \n, \r\n or a lone \r (an old Mac editor's: read as one line, a first-line comment hid
    // the whole file, and its options were silently not applied).
    size_t end = text.find_first_of("\r\n", start);
    if (end == std::string::npos) end = text.size();
    const std::string raw = text.substr(start, end - start);
    start = end + (text.compare(end, 2, "\r\n") == 0 ? 2 : 1);
    // A value cut at it would name another file than the one shown (log.jsonl = a<NUL>b wrote `a`).
    if (raw.find('\0') != std::string::npos)
      throw UsageError(where + " line " + std::to_string(number) + ": holds a NUL byte (is it a text file?)");
    const std::string line = trim(strip_comment(raw));
    if (line.empty()) continue;
    const std::string at = where + " line " + std::to_string(number);
    if (line.front() == '[') {
      if (line.back() != ']' || trim(line.substr(1, line.size() - 2)).empty())
        throw UsageError(at + ": '" + raw + "' is not a [section] line");
      section = trim(line.substr(1, line.size() - 2));
      if (section.size() > 1 && section.back() == '.') section.pop_back();  // [model.] is [model], as Boost read it
      continue;
    }
    const size_t equals = line.find('=');
    if (equals == std::string::npos || trim(line.substr(0, equals)).empty())
      // A YAML or JSON file given as a config says so (before: the line alone; from the user-mistakes audit).
      throw UsageError(at + ": '" + raw + "' is not 'key = value', '[section]' or a comment (# or ;)" +
                       (line.find(':') != std::string::npos || line.front() == '{' || line.front() == '-'
                            ? std::string(": a config file is INI ([section] lines, then key = value), not YAML "
                                          "or JSON")
                            : std::string()));
    const std::string key = trim(line.substr(0, equals));
    // `line` is `raw` trimmed and cut at its comment, so `raw` has this '=' at first_text + equals.
    const size_t first_text = raw.find_first_not_of(" \t");
    const size_t value_start = raw.find_first_not_of(" \t", first_text + equals + 1);
    std::string value = trim(line.substr(equals + 1));
    if (value_start != std::string::npos && raw[value_start] == '"') {
      size_t close = 0;
      std::tie(value, close) = read_quoted(raw, value_start, at);
      const std::string rest = trim(raw.substr(close + 1));
      if (!rest.empty() && rest.front() != '#' && rest.front() != ';')
        throw UsageError(at + ": '" + rest + "' after the quoted value (only a comment, # or ;, may follow it)");
      if (!rest.empty() && !is_blank(raw[close + 1]))
        throw UsageError(at + ": '" + rest + "' right after the quoted value (a comment follows a blank)");
    }
    entries.push_back({section.empty() ? key : section + "." + key, value, number});
  }
  return entries;
}

}  // namespace longctx::cli
