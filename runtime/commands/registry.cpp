#include "runtime/commands/commands.hpp"

namespace longctx::cli {

const std::vector<Command>& all_commands() {
  static const std::vector<Command> commands{
      info_command(),
  };
  return commands;
}

}  // namespace longctx::cli
