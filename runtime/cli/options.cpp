#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "runtime/cli/command.hpp"
#include "runtime/core/error.hpp"

namespace longctx::cli {
namespace {

void declare_common(po::options_description& desc) {
  desc.add_options()
      ("help,h", "show this help and exit")
      ("config", po::value<std::string>(), "INI file with options ([section] key=value -> --section.key)")
      ("comm-timeout", po::value<double>()->default_value(600.0),
       "seconds any rank waits on a peer before the whole job is aborted (no hangs)")
      ("quiet", po::bool_switch(), "do not print the resolved config");
}

std::string allowed_options(const po::options_description& desc) {
  std::string out;
  for (const auto& option : desc.options()) {
    if (!out.empty()) out += ", ";
    out += "--" + option->long_name();
  }
  return out;
}

std::string format_value(const po::variable_value& value) {
  const boost::any& any = value.value();
  if (const auto* s = boost::any_cast<std::string>(&any)) return *s;
  if (const auto* i = boost::any_cast<int64_t>(&any)) return std::to_string(*i);
  if (const auto* i = boost::any_cast<int>(&any)) return std::to_string(*i);
  if (const auto* u = boost::any_cast<uint64_t>(&any)) return std::to_string(*u);
  if (const auto* b = boost::any_cast<bool>(&any)) return *b ? "true" : "false";
  if (const auto* d = boost::any_cast<double>(&any)) {
    std::ostringstream out;
    out << *d;
    return out.str();
  }
  if (const auto* v = boost::any_cast<std::vector<std::string>>(&any)) {
    std::string out;
    for (const auto& item : *v) out += (out.empty() ? "" : " ") + item;
    return out;
  }
  return "?";
}

}  // namespace

std::string env_name(const std::string& option) {
  std::string name = "LONGCTX_";
  for (char c : option) name += (c == '.' || c == '-') ? '_' : static_cast<char>(std::toupper(c));
  return name;
}

int64_t parse_size(const std::string& option, const std::string& text) {
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  int64_t multiplier = 1;
  if (used > 0 && used + 1 == text.size()) {
    switch (text.back()) {
      case 'K': case 'k': multiplier = int64_t{1} << 10; break;
      case 'M': case 'm': multiplier = int64_t{1} << 20; break;
      case 'G': case 'g': multiplier = int64_t{1} << 30; break;
      default: used = 0;
    }
    if (used) ++used;
  }
  if (used == 0 || used != text.size())
    throw UsageError("--" + option + ": '" + text + "' is not an integer (optionally with a K, M or G suffix)");
  return static_cast<int64_t>(value) * multiplier;
}

std::vector<int64_t> parse_size_list(const std::string& option, const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty())
      throw UsageError("--" + option + ": malformed list '" + text +
                       "' (expected comma-separated integers such as 2048,4096 or 2K,4K)");
    values.push_back(parse_size(option, item));
  }
  if (values.empty() || text.back() == ',')
    throw UsageError("--" + option + ": malformed list '" + text +
                     "' (expected comma-separated integers such as 2048,4096 or 2K,4K)");
  return values;
}

Invocation parse_invocation(ProcessContext& process, const Command& command, const std::vector<std::string>& args,
                            const GetEnv& getenv, po::options_description& declared) {
  po::positional_options_description positional;
  if (command.declare) command.declare(declared, positional);
  declare_common(declared);

  Invocation invocation{process, command, {}, {}};
  const std::string where = "'longctx " + command.name + "'";
  try {
    const po::parsed_options from_cli =
        po::command_line_parser(args).options(declared).positional(positional).run();
    po::store(from_cli, invocation.options);
    for (const auto& o : from_cli.options) invocation.sources[o.string_key] = "command line";
    if (invocation.options.count("help")) return invocation;  // --help works without the required options

    std::optional<std::string> config_path;
    if (invocation.options.count("config")) config_path = invocation.options["config"].as<std::string>();
    else if (auto from_env = getenv(env_name("config"))) config_path = *from_env;
    if (config_path) {
      std::ifstream file(*config_path);
      if (!file) throw UsageError("--config: cannot open '" + *config_path + "'");
      const po::parsed_options from_file = po::parse_config_file(file, declared, false);
      po::store(from_file, invocation.options);
      for (const auto& o : from_file.options)
        invocation.sources.emplace(o.string_key, "config " + *config_path);
    }

    std::map<std::string, std::string> env_to_option;
    for (const auto& option : declared.options()) env_to_option[env_name(option->long_name())] = option->long_name();
    std::vector<std::string> env_lines;
    for (const auto& [variable, option] : env_to_option) {
      if (auto value = getenv(variable)) {
        env_lines.push_back("--" + option + "=" + *value);
        invocation.sources.emplace(option, "env " + variable);
      }
    }
    po::store(po::command_line_parser(env_lines).options(declared).run(), invocation.options);
    po::notify(invocation.options);
  } catch (const po::unknown_option& e) {
    throw UsageError("unknown option '" + e.get_option_name() + "' for " + where + "; allowed: " +
                     allowed_options(declared));
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + " (in " + where + "; see `longctx " + command.name + " --help`)");
  }
  for (const auto& option : declared.options())
    invocation.sources.emplace(option->long_name(), "default");
  return invocation;
}

std::string describe(const Invocation& invocation, const po::options_description& declared) {
  std::ostringstream out;
  out << "resolved config for 'longctx " << invocation.command.name << "':\n";
  for (const auto& option : declared.options()) {
    const std::string& name = option->long_name();
    if (name == "help" || name == "config" || !invocation.options.count(name)) continue;
    out << "  " << name << " = " << format_value(invocation.options[name]) << "  ["
        << invocation.sources.at(name) << "]\n";
  }
  return out.str();
}

std::string to_ini(const Invocation& invocation, const po::options_description& declared) {
  std::map<std::string, std::vector<std::string>> sections;
  for (const auto& option : declared.options()) {
    const std::string& name = option->long_name();
    if (name == "help" || name == "config" || !invocation.options.count(name)) continue;
    const size_t dot = name.find('.');
    const std::string section = dot == std::string::npos ? "" : name.substr(0, dot);
    const std::string key = dot == std::string::npos ? name : name.substr(dot + 1);
    sections[section].push_back(key + " = " + format_value(invocation.options[name]));
  }
  std::ostringstream out;
  for (const auto& [section, lines] : sections) {
    if (!section.empty()) out << "[" << section << "]\n";
    for (const auto& line : lines) out << line << "\n";
  }
  return out.str();
}

std::string help_text(const Command& command, const po::options_description& declared) {
  std::ostringstream out;
  out << "usage: longctx " << command.name << " [options]" << (command.positional.empty() ? "" : " ")
      << command.positional << "\n\n"
      << command.summary << "\n\n"
      << declared << "\n"
      << "Every option can also come from --config FILE.ini ([section] key=value) or the environment\n"
      << "(--seq-len <- LONGCTX_SEQ_LEN); the command line wins over the file, the file over the environment.\n";
  return out.str();
}

}  // namespace longctx::cli
