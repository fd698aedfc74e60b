// `longctx data import --text FILES... --out corpus.h5`: byte-level token dataset (one document per file),
// written through a temporary and renamed on success.
#include <iostream>

#include "io/durable.hpp"
#include "io/token_dataset.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/core/log.hpp"

namespace longctx::cli {
namespace {

void declare(po::options_description& desc, po::positional_options_description&) {
  desc.add_options()
      ("text", po::value<std::vector<std::string>>()->multitoken()->required(), "text files, one document each: regular files, pipes (a FIFO, <(zcat a.gz)) or - (standard input)")
      ("out", po::value<std::string>()->required(), "token file to write (HDF5)");
}

// In the config phase, where every rank agrees: "longctx: error: ..." as for the other options' errors (before:
// in the run, "[longctx error r0] --text: empty path").
void check(const Invocation& invocation) {
  for (const std::string& file : invocation.options["text"].as<std::vector<std::string>>())
    if (file.empty()) throw UsageError("--text: empty path", "text");
}

int run(Invocation& invocation) {
  const auto files = invocation.options["text"].as<std::vector<std::string>>();
  const std::string out = io::output_target(invocation.options["out"].as<std::string>());
  return run_on_rank0(invocation, [&] {
    const io::TokenImportStats stats = io::import_text_files(files, out);
    std::cout << "imported " << stats.documents << " document(s), " << stats.tokens << " byte tokens -> " << out << "\n";
    return 0;
  });
}

}  // namespace

Command data_import_command() {
  return {"data import", "turn text files into a byte-level token dataset for `train` (data.task=file)", "", declare, run, check};
}

}  // namespace longctx::cli
