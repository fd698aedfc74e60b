// Launcher detection and cross-checks, option-list parsing, environment names, shared-device check.
#include <gtest/gtest.h>
#include <mpi.h>

#include <unistd.h>

#include <cstdio>
#include <limits>
#include <map>
#include <tuple>

#include "runtime/cli/command.hpp"
#include "runtime/cli/ini.hpp"
#include "runtime/commands/commands.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/memory.hpp"
#include "runtime/process.hpp"

namespace longctx {
namespace {

GetEnv fake_env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(Launcher, NoneWhenNothingIsSet) {
  const LauncherInfo info = detect_launcher(fake_env({}));
  EXPECT_EQ(info.kind, LauncherKind::none);
  EXPECT_NO_THROW(check_launcher(info, 0, 1));
}

TEST(Launcher, OpenMpi) {
  const LauncherInfo info = detect_launcher(
      fake_env({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}}));
  EXPECT_EQ(info.kind, LauncherKind::open_mpi);
  EXPECT_EQ(info.tasks, 4);
  EXPECT_EQ(info.rank, 2);
  EXPECT_EQ(info.local_rank, 0);
  EXPECT_NO_THROW(check_launcher(info, 2, 4));
  EXPECT_THROW(check_launcher(info, 1, 4), UsageError);
}

// An empty variable counts as unset (before: OMPI_COMM_WORLD_SIZE= made a plain run Open MPI's).
TEST(Launcher, AnEmptyVariableIsUnset) {
  EXPECT_EQ(detect_launcher(fake_env({{"OMPI_COMM_WORLD_SIZE", ""}, {"OMPI_COMM_WORLD_RANK", ""}})).kind,
            LauncherKind::none);
  EXPECT_EQ(detect_launcher(fake_env({{"PMI_SIZE", ""}, {"PMI_RANK", "0"}})).kind, LauncherKind::none);
  EXPECT_EQ(detect_launcher(fake_env({{"SLURM_JOB_ID", ""}})).kind, LauncherKind::none);
  EXPECT_EQ(detect_launcher(fake_env({{"SLURM_PROCID", "0"}, {"SLURM_STEP_ID", ""}, {"SLURM_NTASKS", "2"},
                                      {"SLURM_JOB_ID", "7"}}))
                .tasks,
            -1)
      << "the batch script, not a task of a step";
}

// A world of one where Open MPI's variables say more: also a process no launcher started, with the variables
// inherited (before: only "rebuild" was suggested).
TEST(Launcher, AWorldOfOneNamesLeftOverVariables) {
  const LauncherInfo info = detect_launcher(fake_env({{"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_RANK", "2"}}));
  for (const int world : {1, 2}) {
    try {
      check_launcher(info, 0, world);
      ADD_FAILURE() << "accepted at world " << world;
    } catch (const UsageError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("linked against a different MPI"), std::string::npos) << message;
      EXPECT_EQ(message.find("OMPI_COMM_WORLD_SIZE is left over from another job or set by hand (unset it)") !=
                    std::string::npos,
                world == 1)
          << message;
    }
  }
}

TEST(Launcher, MpirunInsideSbatchIsOpenMpi) {
  const LauncherInfo info = detect_launcher(fake_env({{"OMPI_COMM_WORLD_SIZE", "2"},
                                                      {"OMPI_COMM_WORLD_RANK", "1"},
                                                      {"SLURM_PROCID", "0"},
                                                      {"SLURM_NTASKS", "8"}}));
  EXPECT_EQ(info.kind, LauncherKind::open_mpi);
  EXPECT_NO_THROW(check_launcher(info, 1, 2));
}

TEST(Launcher, SrunStepTasksWinOverJobTasks) {
  const LauncherInfo info = detect_launcher(fake_env(
      {{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "8"}, {"SLURM_STEP_ID", "0"}, {"SLURM_STEP_NUM_TASKS", "2"},
       {"SLURM_LOCALID", "1"}}));
  EXPECT_EQ(info.kind, LauncherKind::slurm);
  EXPECT_EQ(info.tasks, 2);
  EXPECT_EQ(info.rank, 1);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_NO_THROW(check_launcher(info, 1, 2));
}

TEST(Launcher, SrunWithoutPmiIsAUsageErrorThatSaysSo) {
  const LauncherInfo info =
      detect_launcher(fake_env({{"SLURM_PROCID", "1"}, {"SLURM_STEPID", "3"}, {"SLURM_STEP_NUM_TASKS", "4"}}));
  try {
    check_launcher(info, 0, 1);
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("srun without PMI"), std::string::npos) << message;
    EXPECT_NE(message.find("--mpi=pmix"), std::string::npos) << message;
    EXPECT_EQ(e.code(), ExitCode::usage);
  }
}

TEST(Launcher, SrunWithoutPmiIsCaughtBeforeMpiInit) {
  const auto vars = std::map<std::string, std::string>{
      {"SLURM_PROCID", "0"}, {"SLURM_STEP_ID", "0"}, {"SLURM_STEP_NUM_TASKS", "2"}};
  const LauncherInfo info = detect_launcher(fake_env(vars));
  EXPECT_THROW(check_launcher_before_mpi(info, fake_env(vars)), UsageError);
  auto with_pmix = vars;
  with_pmix["PMIX_RANK"] = "0";
  EXPECT_NO_THROW(check_launcher_before_mpi(info, fake_env(with_pmix)));
  EXPECT_NO_THROW(check_launcher_before_mpi(detect_launcher(fake_env({})), fake_env({})));
}

// A launcher's count or rank that is no whole number (or tasks below 1, a rank below 0) is refused, naming it
// (before: read as unknown, so `SLURM_NTASKS=-4`, `4abc` passed the srun-without-PMI check, exit 0).
TEST(Launcher, AnInvalidTaskCountOrRankIsRefusedNamingIt) {
  const std::vector<std::map<std::string, std::string>> cases = {
      {{"SLURM_PROCID", "0"}, {"SLURM_STEP_ID", "0"}, {"SLURM_NTASKS", "-4"}},
      {{"SLURM_PROCID", "0"}, {"SLURM_STEP_ID", "0"}, {"SLURM_NTASKS", "4abc"}},
      {{"SLURM_PROCID", "0"}, {"SLURM_STEP_ID", "0"}, {"SLURM_NTASKS", "0"}},
      {{"SLURM_PROCID", "x"}, {"SLURM_STEP_ID", "0"}, {"SLURM_NTASKS", "1"}},
      {{"OMPI_COMM_WORLD_SIZE", "abc"}, {"OMPI_COMM_WORLD_RANK", "0"}},
      {{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "-1"}},
      {{"PMI_SIZE", "abc"}, {"PMI_RANK", "0"}},
  };
  for (const auto& vars : cases) {
    const LauncherInfo info = detect_launcher(fake_env(vars));
    try {
      check_launcher_before_mpi(info, fake_env(vars));
      ADD_FAILURE() << "accepted: " << ::testing::PrintToString(vars);
    } catch (const UsageError& e) {
      const std::string message = e.what();
      bool named = false;
      for (const auto& [name, value] : vars)
        named = named || message.find(name + "='" + value + "' is no whole number") != std::string::npos;
      EXPECT_TRUE(named) << message;
    }
  }
  // Valid ones pass; an unset local rank is unknown, not invalid.
  const auto valid = std::map<std::string, std::string>{{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "1"}};
  EXPECT_EQ(detect_launcher(fake_env(valid)).invalid, "");
  EXPECT_NO_THROW(check_launcher_before_mpi(detect_launcher(fake_env(valid)), fake_env(valid)));
}

// srun --mpi=pmi2 hands the tasks PMI_FD / PMI_RANK / PMI_SIZE. Whether MPI_Init can use them is the MPI's:
// where it cannot (Open MPI without s1 / s2), two tasks are refused before MPI_Init; one task starts alone.
TEST(Launcher, SrunWithPmi2IsRefusedWhereOpenMpiCannotReadIt) {
  const auto vars = std::map<std::string, std::string>{{"SLURM_PROCID", "1"}, {"SLURM_STEP_ID", "0"},
                                                       {"SLURM_STEP_NUM_TASKS", "2"}, {"PMI_FD", "11"},
                                                       {"PMI_RANK", "1"}, {"PMI_SIZE", "2"}};
  const LauncherInfo info = detect_launcher(fake_env(vars));
  const auto cannot = [] { return std::optional<bool>(false); };
  const auto can = [] { return std::optional<bool>(true); };
  const auto unknown = [] { return std::optional<bool>(); };
  EXPECT_TRUE(check_launcher_before_mpi(info, fake_env(vars), can).empty());
  EXPECT_TRUE(check_launcher_before_mpi(info, fake_env(vars), unknown).empty());
#ifdef OPEN_MPI
  try {
    check_launcher_before_mpi(info, fake_env(vars), cannot);
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("with PMI-2 (srun --mpi=pmi2), which this Open MPI cannot use"), std::string::npos) << message;
    EXPECT_NE(message.find("srun --mpi=pmix"), std::string::npos) << message;
  }
  auto one = vars;
  one["SLURM_STEP_NUM_TASKS"] = "1";
  one["SLURM_PROCID"] = "0";
  one["PMI_SIZE"] = "1";
  one["PMI_RANK"] = "0";
  EXPECT_EQ(check_launcher_before_mpi(detect_launcher(fake_env(one)), fake_env(one), cannot),
            std::vector<std::string>{"SLURM_STEP_ID"});
  EXPECT_TRUE(check_launcher_before_mpi(detect_launcher(fake_env(one)), fake_env(one), can).empty());
  // This machine's Open MPI shows its PMI components to MPI_T before MPI_Init (Debian's: PMIx only).
  EXPECT_TRUE(open_mpi_speaks_pmi().has_value());
#else
  EXPECT_TRUE(check_launcher_before_mpi(info, fake_env(vars), cannot).empty());
#endif
}

// MPICH's or Intel MPI's mpiexec (Hydra) hands each task PMI_SIZE / PMI_RANK. An Open MPI build would run
// each as a world of one, so it refuses before MPI_Init; a mismatch after it is a usage error too.
TEST(Launcher, HydraMpiexecIsDetected) {
  const auto hydra = std::map<std::string, std::string>{{"PMI_SIZE", "4"}, {"PMI_RANK", "2"}, {"MPI_LOCALRANKID", "2"}};
  const LauncherInfo info = detect_launcher(fake_env(hydra));
  EXPECT_EQ(info.kind, LauncherKind::pmi);
  EXPECT_EQ(info.tasks, 4);
  EXPECT_EQ(info.rank, 2);
  EXPECT_EQ(info.local_rank, 2);
  EXPECT_THROW(check_launcher(info, 0, 1), UsageError);
  EXPECT_NO_THROW(check_launcher(info, 2, 4));
#ifdef OPEN_MPI
  EXPECT_THROW(check_launcher_before_mpi(info, fake_env(hydra)), UsageError);
#endif
  const auto one = std::map<std::string, std::string>{{"PMI_SIZE", "1"}, {"PMI_RANK", "0"}};
  EXPECT_NO_THROW(check_launcher_before_mpi(detect_launcher(fake_env(one)), fake_env(one)));
  // srun --mpi=pmi2 also sets PMI_*, which agree with the step: that is Slurm.
  const LauncherInfo srun = detect_launcher(fake_env({{"PMI_SIZE", "2"}, {"PMI_RANK", "1"}, {"SLURM_PROCID", "1"},
                                                       {"SLURM_STEP_ID", "0"}, {"SLURM_STEP_NUM_TASKS", "2"}}));
  EXPECT_EQ(srun.kind, LauncherKind::slurm);
  // Hydra inside a one-task step (srun --pty bash, then mpiexec -n 4): PMI_* disagree with the step.
  const LauncherInfo inside = detect_launcher(fake_env({{"PMI_SIZE", "4"}, {"PMI_RANK", "1"}, {"SLURM_PROCID", "0"},
                                                        {"SLURM_STEP_ID", "0"}, {"SLURM_STEP_NUM_TASKS", "1"}}));
  EXPECT_EQ(inside.kind, LauncherKind::pmi);
  EXPECT_EQ(inside.tasks, 4);
  EXPECT_EQ(inside.rank, 1);
#ifdef OPEN_MPI
  EXPECT_THROW(check_launcher_before_mpi(inside, fake_env({{"PMI_SIZE", "4"}, {"PMI_RANK", "1"}})), UsageError);
#endif
}

// What sbatch's batch script and `srun -n 1` hand a process (seen on this machine's Slurm 22.05): neither
// needs PMI, and neither is a world-size mismatch.
TEST(Launcher, BatchScriptAndOneTaskStepAreFine) {
  const auto batch = std::map<std::string, std::string>{
      {"SLURM_JOB_ID", "7"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "0"}};
  const LauncherInfo in_batch = detect_launcher(fake_env(batch));
  EXPECT_EQ(in_batch.kind, LauncherKind::slurm);
  EXPECT_TRUE(check_launcher_before_mpi(in_batch, fake_env(batch)).empty());
  EXPECT_NO_THROW(check_launcher(in_batch, 0, 1));

  const auto one_task = std::map<std::string, std::string>{
      {"SLURM_JOB_ID", "7"}, {"SLURM_PROCID", "0"}, {"SLURM_STEP_ID", "0"}, {"SLURM_STEP_NUM_TASKS", "1"}};
  const LauncherInfo step = detect_launcher(fake_env(one_task));
  EXPECT_EQ(step.tasks, 1);
#ifdef OPEN_MPI
  // Open MPI 4.1 takes such a step for a broken build and refuses to start ("not built with SLURM's PMI
  // support"): the variable it goes by is unset before MPI_Init (tests/cli/slurm_launch.sh runs it).
  EXPECT_EQ(check_launcher_before_mpi(step, fake_env(one_task)), std::vector<std::string>{"SLURM_STEP_ID"});
#else
  EXPECT_TRUE(check_launcher_before_mpi(step, fake_env(one_task)).empty());
#endif
  auto pmix = one_task;
  pmix["PMIX_RANK"] = "0";
  EXPECT_TRUE(check_launcher_before_mpi(step, fake_env(pmix)).empty());
  EXPECT_NO_THROW(check_launcher(step, 0, 1));
}

TEST(Options, SizeListsAcceptSuffixes) {
  EXPECT_EQ(cli::parse_size_list("segment-lengths", "2048,4K,1M"),
            (std::vector<int64_t>{2048, 4096, 1048576}));
  EXPECT_EQ(cli::parse_size("seq-len", "1G"), int64_t{1} << 30);
  EXPECT_EQ(cli::parse_size("seq-len", "-3"), -3);  // range checks belong to the option's owner
  EXPECT_EQ(cli::parse_size_list("segment-lengths", "2048, 4K ,8k"), (std::vector<int64_t>{2048, 4096, 8192}));
  EXPECT_EQ(cli::parse_size("seq-len", "8G"), int64_t{8} << 30);
  EXPECT_EQ(cli::parse_size("seq-len", "9223372036854775807"), std::numeric_limits<int64_t>::max());
}

TEST(Options, SizesThatOverflowAreRefusedNotWrapped) {
  for (const char* big : {"9223372036854775808", "8589934592G", "17179869185G", "18014398509481985K",
                          "99999999999999999999"}) {
    try {
      cli::parse_size("seq-len", big);
      ADD_FAILURE() << "accepted '" << big << "'";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--seq-len"), std::string::npos) << e.what();
    }
  }
}

TEST(Options, MalformedListsNameTheOption) {
  for (const char* bad : {"", "2048,", ",2048", "20x48", "2048,,4096", "4KB", "K", "+8", "0x10", "1e3", "1.5K", "-",
                          "2048, "}) {
    try {
      cli::parse_size_list("segment-lengths", bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--segment-lengths"), std::string::npos) << e.what();
    }
  }
}

TEST(Options, EnvironmentNames) {
  EXPECT_EQ(cli::env_name("seq-len"), "LONGCTX_SEQ_LEN");
  EXPECT_EQ(cli::env_name("model.segment_lengths"), "LONGCTX_MODEL_SEGMENT_LENGTHS");
}

// Each entry's key, value and line, in order.
void expect_entries(const std::vector<cli::IniEntry>& entries,
                    const std::vector<std::tuple<std::string, std::string, int>>& want) {
  ASSERT_EQ(entries.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(entries[i].key, std::get<0>(want[i]));
    EXPECT_EQ(entries[i].value, std::get<1>(want[i]));
    EXPECT_EQ(entries[i].line, std::get<2>(want[i]));
  }
}

// ini.hpp's rule: a comment is a line that starts with # or ;, or the rest of a line from a # or ; after a
// blank; one right after other text is part of the value. Boost's own reader cut values at any # and kept
// `; note` in them.
TEST(Options, IniCommentsStartAtALineOrAfterABlank) {
  const std::string text =
      "\xEF\xBB\xBF# a comment\n"
      "  ; another\n"
      "seq-len = 4K   # a note\n"
      "jsonl = /tmp/run#1.jsonl\n"
      "output = a;b.h5\t; a note\r\n"
      "\n"
      "[ model ]  ; the model\n"
      "layers=2\n"
      "causal =\n"
      "rope = # only a comment\n"
      "[data.]\n"  // Boost read [data.] as [data]
      "path = x.h5\n";
  expect_entries(cli::parse_ini(text, "x.ini"),
                 {{"seq-len", "4K", 3},
                  {"jsonl", "/tmp/run#1.jsonl", 4},
                  {"output", "a;b.h5", 5},
                  {"model.layers", "2", 8},
                  {"model.causal", "", 9},
                  {"model.rope", "", 10},
                  {"data.path", "x.h5", 12}});
}

// A lone \r (an old Mac editor's line end) ends a line as \n and \r\n do: read as one line, a first-line
// comment hid every option after it.
TEST(Options, IniLoneCarriageReturnEndsALine) {
  expect_entries(cli::parse_ini("# a note\r[train]\rsteps = 3\r\r\nseed=4\r\nlr = 1e-3\n\rx = y\r", "mac.ini"),
                 {{"train.steps", "3", 3}, {"train.seed", "4", 5}, {"train.lr", "1e-3", 6}, {"train.x", "y", 8}});
}

// A quoted value holds what a plain one cannot (a blank before # or ;, blanks at its ends); ini_value()
// writes any value so that it reads back the same.
TEST(Options, IniQuotedValuesRoundTrip) {
  const auto entries = cli::parse_ini("dir = \"ck #2\"   # note\n"
                                      "b=\" lead ; and trail \"\t;x\n"
                                      "c = \"say \\\"hi\\\" C:\\\\x C:\\y\"\n"
                                      "d = \"\"\n"
                                      "e = plain\"quote\n",
                                      "q.ini");
  const std::vector<std::pair<std::string, std::string>> want{
      {"dir", "ck #2"}, {"b", " lead ; and trail "}, {"c", "say \"hi\" C:\\x C:\\y"}, {"d", ""}, {"e", "plain\"quote"}};
  ASSERT_EQ(entries.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(entries[i].value, want[i].second) << want[i].first;

  for (const std::string value : {"", "x", "/tmp/run#1.h5", "ck #2", "a ;b", " lead", "trail\t", "#x", ";x", "\"q\"",
                                  "a\"b", "back\\slash", "\\\"", "tab\t#x", "end\\"}) {
    const std::string line = "k = " + cli::ini_value(value) + "   ; a note\n";
    const auto read = cli::parse_ini(line, "w.ini");
    ASSERT_EQ(read.size(), 1u) << line;
    EXPECT_EQ(read[0].value, value) << line;
  }
  EXPECT_EQ(cli::ini_value("/tmp/run#1.h5"), "/tmp/run#1.h5");  // plain where plain reads back
  EXPECT_THROW(cli::ini_value("two\nlines"), UsageError);
}

TEST(Options, IniSyntaxErrorsNameTheFileAndLine) {
  for (const char* bad : {"seed 4\n", "= 4\n", "[model\n", "[]\n", "[ ] ; empty\n", "dir = \"open\n",
                          "dir = \"a\" b\n", "dir = \"a\"#b\n"}) {
    try {
      cli::parse_ini(std::string("# ok\n") + bad, "run.ini");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("run.ini line 2: "), std::string::npos) << e.what();
    }
  }
}

// A YAML or JSON file given as --config is said to be one (before: its first line was quoted alone); a line
// that is neither says nothing of them.
TEST(Options, IniSaysWhenTheFileIsYamlOrJson) {
  for (const char* text : {"model:\n  layers: 2\n", "{\"model\": {\"layers\": 2}}\n", "- a\n", "justaword\n"}) {
    try {
      cli::parse_ini(text, "c.ini");
      ADD_FAILURE() << "accepted '" << text << "'";
    } catch (const UsageError& e) {
      const bool said = std::string(e.what()).find("a config file is INI") != std::string::npos;
      EXPECT_EQ(said, std::string(text) != "justaword\n") << e.what();
    }
  }
}

TEST(Memory, PressureIsSaidWhereTheNeedPassesMemAvailable) {
  const double gib = double(uint64_t{1} << 30);
  EXPECT_EQ(memory_pressure_note(1 * gib, 4 * gib, 2 * gib), "");
  EXPECT_EQ(memory_pressure_note(3 * gib, 4 * gib, static_cast<double>(std::numeric_limits<uint64_t>::max())), "");  // none
  const std::string note = memory_pressure_note(3 * gib, 4 * gib, 2 * gib);
  EXPECT_NE(note.find("3.0 GiB on this node, which fits its 4.0 GiB, but 2.0 GiB are available now (MemAvailable"),
            std::string::npos)
      << note;
}

// Text from files and users for the terminal: whole UTF-8 characters stay, binary bytes and C1 controls
// (U+009B is CSI) are escaped (before: every byte past ASCII went out as it was).
TEST(Log, PrintableKeepsUtf8AndEscapesBinary) {
  EXPECT_EQ(log::printable("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(log::printable("a\xff\xfe b"), "a\\xff\\xfe b");
  EXPECT_EQ(log::printable("\xc2\x9b" "2J"), "\\xc2\\x9b2J");
  EXPECT_EQ(log::printable("\xe2\x82"), "\\xe2\\x82");  // cut short
  EXPECT_EQ(log::printable("\x1b[2J\tx"), "\\x1b[2J\tx");
  EXPECT_EQ(log::printable("caf\xc3\xa9\\", "", std::string::npos, true), "caf\\xc3\\xa9\\x5c");
}

// A path in a command a message suggests pastes back as that path: bash reads it as one argument naming that
// file (before: `longctx data verify my data.h5` verified 'my' and 'data.h5'; from the regression audit: a
// leading '-' read as an option, a newline shown as \x0a inside quotes named another file).
TEST(Log, ShellPathReadsBackAsThePath) {
  EXPECT_EQ(log::shell_path("runs/step_00000001.h5"), "runs/step_00000001.h5");
  EXPECT_EQ(log::shell_path("my data.h5"), "'my data.h5'");
  EXPECT_EQ(log::shell_path("-dash"), "./-dash");
  EXPECT_EQ(log::shell_path("nl\nx"), "$'nl\\x0ax'");
  EXPECT_EQ(log::shell_path(""), "''");
  const std::string script = testing::TempDir() + "shell_path_" + std::to_string(::getpid()) + ".sh";
  for (const std::string path : {"my data.h5", "it's.h5", "$HOME/*.h5", "a\\b\"c`d`;e|f&g", "''", "-x y",
                                 "caf\xc3\xa9 1", "nl\nx'\\.h5", "tab\t\x1b[2J\x7f.h5"}) {
    const std::string word = log::shell_path(path);
    EXPECT_EQ(log::printable(word), word) << "printed as it is: " << path;
    std::FILE* out = std::fopen(script.c_str(), "w");
    ASSERT_NE(out, nullptr);
    std::fprintf(out, "printf %%s %s", word.c_str());
    std::fclose(out);
    FILE* bash = ::popen(("bash " + script).c_str(), "r");
    ASSERT_NE(bash, nullptr);
    std::string read;
    for (int c; (c = std::fgetc(bash)) != EOF;) read += static_cast<char>(c);
    EXPECT_EQ(::pclose(bash), 0) << path;
    EXPECT_EQ(read, path[0] == '-' ? "./" + path : path);
  }
  std::remove(script.c_str());
}

// Sizes in the unit that reads best, up to EiB (a wrapped device byte count printed "17179869184.0 GiB").
TEST(Log, HumanBytesPicksTheUnit) {
  EXPECT_EQ(cli::human_bytes(0), "0 B");
  EXPECT_EQ(cli::human_bytes(1023), "1023 B");
  EXPECT_EQ(cli::human_bytes(1024), "1.0 KiB");
  EXPECT_EQ(cli::human_bytes(3 << 19), "1.5 MiB");
  EXPECT_EQ(cli::human_bytes((1 << 20) - 1), "1.0 MiB");  // not "1024.0 KiB"
  EXPECT_EQ(cli::human_bytes((1 << 20) - 60), "1023.9 KiB");
  EXPECT_EQ(cli::human_bytes((int64_t{1} << 40) - 1), "1.0 TiB");
  EXPECT_EQ(cli::human_bytes(int64_t{3} << 39), "1.5 TiB");
  EXPECT_EQ(cli::human_bytes(int64_t{1} << 54), "16.0 PiB");
  EXPECT_EQ(cli::human_bytes(std::numeric_limits<int64_t>::max()), "8.0 EiB");
}

TEST(Info, SharedGpuIsFoundCpuIsNot) {
  EXPECT_TRUE(cli::find_shared_devices({"a|cpu", "a|cpu", "b|cpu"}).empty());
  EXPECT_TRUE(cli::find_shared_devices({"a|cuda:0", "a|cuda:1", "b|cuda:0"}).empty());
  const auto problems = cli::find_shared_devices({"a|cuda:0", "b|cuda:0", "a|cuda:0"});
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("ranks 0 and 2"), std::string::npos) << problems[0];
  // One GPU under two indices (CUDA_VISIBLE_DEVICES in another order on each rank): found by its uuid.
  const auto permuted = cli::find_shared_devices({"a|cuda:0 H100 GPU-1a2b3c4d", "a|cuda:1 H100 GPU-1a2b3c4d",
                                                  "a|cuda:1 H100 GPU-99887766", "b|cuda:0 H100 GPU-1a2b3c4d"});
  ASSERT_EQ(permuted.size(), 1u);
  EXPECT_NE(permuted[0].find("ranks 0 and 1 share a|cuda:0 H100 GPU-1a2b3c4d (rank 1: a|cuda:1"), std::string::npos)
      << permuted[0];
}

}  // namespace
}  // namespace longctx
