// INI text as longctx reads it: config files (--config) and a checkpoint's /config. One rule for
// comments, so a value means the same wherever it is read:
//   - a line whose first non-blank character is # or ; is a comment;
//   - elsewhere a comment starts at a # or ; that follows a blank (`seed = 4   # note`);
//   - a # or ; right after other text is part of the value (`jsonl = /tmp/run#1.jsonl`);
//   - a value that starts with " is quoted: it runs to the closing " and may hold anything but a line
//     break; inside it a backslash before " or before a backslash stands for that character alone
//     (`dir = "ck #2"   # note`, `dir = " lead"`); only blanks and a comment may follow it. ini_value()
//     writes a value so that it reads back the same.
// `[section]` lines prefix the keys after them (`[model] layers = 2` is `model.layers`); blanks around
// keys, values and section names are dropped; a UTF-8 byte order mark at the start and a \r at the end of
// each line (Windows editors) are ignored.
#pragma once

#include <string>
#include <vector>

namespace longctx::cli {

struct IniEntry {
  std::string key;    // with its section: "model.layers"
  std::string value;  // may be empty (`key =`); what that means is the reader's call
  int line = 0;       // 1-based, for messages
};

// The `key = value` lines of `text`, in order. Throws UsageError naming `where` (a file name) and the line
// for a line that is neither a comment, a [section] nor key = value.
std::vector<IniEntry> parse_ini(const std::string& text, const std::string& where);

// `value` as the right-hand side of a `key = value` line that parse_ini reads back as `value`: as it is
// where that is so, quoted otherwise (blanks at its ends, a blank before # or ;, a leading # ; or ").
// Throws UsageError for a line break, which no INI line holds.
std::string ini_value(const std::string& value);

// A double as the resolved config (and so a checkpoint's /config) writes it: the shortest text, from 6
// significant digits on, that reads back as the same double (0.05, not 0.050000000000000003).
std::string double_text(double value);

}  // namespace longctx::cli
