#include "runtime/commands/train_record.hpp"

#include <csignal>

#include "runtime/commands/attention_options.hpp"
#include "runtime/core/error.hpp"

namespace longctx::cli {

std::string signal_name(int signal) {
  if (signal == SIGUSR1) return "SIGUSR1";
  if (signal == SIGTERM) return "SIGTERM";
  if (signal == SIGINT) return "SIGINT";
  if (signal == SIGHUP) return "SIGHUP";
  return std::to_string(signal);
}

std::string summary_json(const RunRecord& record, int code, const std::string& error, const std::string& started,
                         double seconds, int world_size) {
  const auto number_or_null = [](int64_t value) { return value < 0 ? std::string("null") : std::to_string(value); };
  const auto string_or_null = [](const std::string& text) { return text.empty() ? std::string("null") : json_string(text); };
  const char* outcome = code == 0                                       ? "done"
                        : code == static_cast<int>(ExitCode::requeue) ? "stopped"
                        : record.signal != 0 && code == 128 + record.signal ? "stopped_unsaved"
                                                                              : "failed";
  const bool known = record.first_step >= 0;
  return std::string("{\"format\": \"longctx-train-summary\", \"format_version\": 1, \"started\": ") + json_string(started) +
         ", \"outcome\": \"" + outcome +
         "\", \"exit\": " + std::to_string(code) +
         ", \"signal\": " + (record.signal ? json_string(signal_name(record.signal)) : std::string("null")) +
         ", \"error\": " + string_or_null(error) + ", \"first_step\": " + number_or_null(record.first_step) +
         ", \"step\": " + number_or_null(record.step) +
         ", \"steps_trained\": " + (known ? std::to_string(record.step - record.first_step) : std::string("null")) +
         ", \"train_steps\": " + number_or_null(record.train_steps) +
         ", \"checkpoint\": " + string_or_null(record.committed_path) +
         ", \"checkpoint_step\": " + number_or_null(record.committed) +
         ", \"checkpoint_eval_pending\": " + (record.committed_pending ? "true" : "false") +
         ", \"checkpoint_advanced\": " + (record.advanced() ? "true" : "false") +
         ", \"seconds\": " + fixed(seconds, 3) + ", \"world_size\": " + std::to_string(world_size) +
         ", \"run_id\": " + string_or_null(record.run_id) + "}\n";
}

}  // namespace longctx::cli
