// What a command prints and saves of its options once they are resolved: the resolved config (describe),
// the values every rank must hold alike (shared_values), a checkpoint's /config text (to_ini), and one
// value as those show it (value_text, holds_default).
#include <iomanip>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/cli/command.hpp"
#include "runtime/cli/ini.hpp"
#include "runtime/core/error.hpp"

namespace longctx::cli {
namespace {

std::string format_value(const po::variable_value& value) {
  const boost::any& any = value.value();
  if (const auto* s = boost::any_cast<std::string>(&any)) return *s;
  if (const auto* i = boost::any_cast<int64_t>(&any)) return std::to_string(*i);
  if (const auto* i = boost::any_cast<int>(&any)) return std::to_string(*i);
  if (const auto* u = boost::any_cast<uint64_t>(&any)) return std::to_string(*u);
  if (const auto* b = boost::any_cast<bool>(&any)) return *b ? "true" : "false";
  if (const auto* d = boost::any_cast<double>(&any)) return double_text(*d);
  if (const auto* v = boost::any_cast<std::vector<std::string>>(&any)) {
    std::string out;
    for (const auto& item : *v) out += (out.empty() ? "" : " ") + item;
    return out;
  }
  return "?";
}

// A text value as the resolved config shows it: as it is, or in double quotes where that would hide
// something (empty, blanks at its ends, blanks inside a list item, a leading quote, control characters,
// shown escaped).
std::string shown(const std::string& value, bool list_item) {
  bool plain = !value.empty() && value.front() != ' ' && value.back() != ' ' && value.front() != '"';
  for (char c : value) plain = plain && static_cast<unsigned char>(c) >= 0x20 && c != 0x7f && !(list_item && c == ' ');
  if (plain) return value;
  std::ostringstream out;
  out << '"';
  for (char c : value) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') out << '\\' << c;
    else if (c == '\n') out << "\\n";
    else if (c == '\r') out << "\\r";
    else if (c == '\t') out << "\\t";
    else if (byte < 0x20 || byte == 0x7f) out << "\\x" << std::hex << std::setw(2) << std::setfill('0') << int{byte} << std::dec;
    else out << c;
  }
  out << '"';
  return out.str();
}

}  // namespace

std::string value_text(const Invocation& invocation, const std::string& option) {
  return format_value(invocation.options[option]);
}

bool holds_default(const Invocation& invocation, const std::string& option) {
  const po::variable_value& value = invocation.options[option];
  if (value.empty() || value.defaulted()) return true;
  po::options_description declared;
  po::positional_options_description positional;
  invocation.command.declare(declared, positional);
  const po::option_description* description = declared.find_nothrow(option, false);
  boost::any default_value;
  if (!description || !description->semantic()->apply_default(default_value)) return false;
  return format_value(po::variable_value(default_value, true)) == format_value(value);
}

std::string describe(const Invocation& invocation, const po::options_description& declared) {
  std::ostringstream out;
  out << "resolved config for 'longctx " << invocation.command.name << "':\n";
  for (const auto& option : declared.options()) {
    const std::string& name = option->long_name();
    if (name == "help" || name == "config") continue;
    if (!invocation.options.count(name)) {  // no default, not given: listed too, as --help lists it
      out << "  " << name << " = (unset)\n";
      continue;
    }
    const boost::any& value = invocation.options[name].value();
    // An empty default is what --help calls "(unset)" (before: `""  [default]` here).
    if (const auto* s = boost::any_cast<std::string>(&value); s && s->empty() && invocation.options[name].defaulted()) {
      out << "  " << name << " = (unset)\n";
      continue;
    }
    std::string text;
    if (const auto* s = boost::any_cast<std::string>(&value)) {
      text = shown(*s, false);
    } else if (const auto* items = boost::any_cast<std::vector<std::string>>(&value)) {
      for (const auto& item : *items) text += (text.empty() ? "" : " ") + shown(item, true);
    } else {
      text = format_value(invocation.options[name]);
    }
    out << "  " << name << " = " << text << "  [" << invocation.sources.at(name) << "]\n";
  }
  return out.str();
}

std::vector<std::pair<std::string, std::string>> shared_values(const Invocation& invocation,
                                                               const po::options_description& declared) {
  std::vector<std::pair<std::string, std::string>> values;
  for (const auto& option : declared.options()) {
    const std::string& name = option->long_name();
    if (name == "help" || name == "config" || name == "quiet" || name == "threads" || name == "train.threads" ||
        !invocation.options.count(name))
      continue;
    values.emplace_back(name, format_value(invocation.options[name]));
  }
  return values;
}

std::string to_ini(const Invocation& invocation, const po::options_description& declared) {
  std::map<std::string, std::vector<std::string>> sections;
  for (const auto& option : declared.options()) {
    const std::string& name = option->long_name();
    if (name == "help" || name == "config" || !invocation.options.count(name)) continue;
    const size_t dot = name.find('.');
    const std::string section = dot == std::string::npos ? "" : name.substr(0, dot);
    const std::string key = dot == std::string::npos ? name : name.substr(dot + 1);
    std::string value;
    try {
      value = ini_value(format_value(invocation.options[name]));
    } catch (const UsageError& e) {
      throw UsageError("--" + name + ": " + e.what());
    }
    sections[section].push_back(key + (value.empty() ? " =" : " = " + value));
  }
  std::ostringstream out;
  for (const auto& [section, lines] : sections) {
    if (!section.empty()) out << "[" << section << "]\n";
    for (const auto& line : lines) out << line << "\n";
  }
  return out.str();
}

}  // namespace longctx::cli
