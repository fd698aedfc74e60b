#include "runtime/cli/ini.hpp"

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

}  // namespace

std::vector<IniEntry> parse_ini(const std::string& text, const std::string& where) {
  static const std::string bom = "\xEF\xBB\xBF";
  std::vector<IniEntry> entries;
  std::string section;
  size_t start = text.compare(0, bom.size(), bom) == 0 ? bom.size() : 0;
  for (int number = 1; start < text.size(); ++number) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string raw = text.substr(start, end - start);
    start = end + 1;
    if (!raw.empty() && raw.back() == '\r') raw.pop_back();
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
      throw UsageError(at + ": '" + raw + "' is not 'key = value', '[section]' or a comment (# or ;)");
    const std::string key = trim(line.substr(0, equals));
    entries.push_back({section.empty() ? key : section + "." + key, trim(line.substr(equals + 1)), number});
  }
  return entries;
}

}  // namespace longctx::cli
