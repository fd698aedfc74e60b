// Logging: every line says which rank wrote it. info() prints on rank 0 only (the progress a person
// reads); warn() and error() print on every rank that has something to say.
#pragma once

#include <string>

namespace longctx::log {

void info(const std::string& message);         // rank 0 only, to stderr
void info_all(const std::string& message);     // every rank, to stderr
void warn(const std::string& message);         // every rank that calls it
// A warning every rank would print alike (about the configuration): rank 0 prints it, once per process.
void warn_once(const std::string& message);
void error(const std::string& message);
// `message` with control characters other than '\t' (and '\n' when `keep_line_breaks`) as \xNN: what every
// function above prints, for the few messages printed without them.
std::string printable(const std::string& message, bool keep_line_breaks = false);

}  // namespace longctx::log
