#include "runtime/commands/commands.hpp"

namespace longctx::cli {

const std::vector<Command>& all_commands() {
  static const std::vector<Command> commands{
      info_command(),
      attend_command(),
      bench_attention_command(),
      bench_comm_command(),
      ckpt_inspect_command(),
      ckpt_verify_command(),
      data_import_command(),
      data_inspect_command(),
      data_verify_command(),
      eval_command(),
      train_command(),
  };
  return commands;
}

}  // namespace longctx::cli
