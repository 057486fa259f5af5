/* The undo pre-filter of strata/proxy/_suspect.c, used by the relay's pump. */
#ifndef STRATA_SUSPECT_H
#define STRATA_SUSPECT_H

#include <stddef.h>

/* 1 if the SQL text may hold a statement that destroys data (see _suspect.c). */
int strata_query_suspect(const unsigned char *query, size_t length);

/* Whether the relay holds a whole frontend message for undo: a Query ('Q') or a Parse
 * ('P') whose query is suspect, a Parse that defines one of ``names`` again, or a Bind
 * ('B') of one of ``names`` (prepared statements found destructive: "\0a\0b\0", or
 * empty); 0 for every other message. */
int strata_message_suspect(const unsigned char *message, size_t length,
                           const unsigned char *names, size_t names_length);

#endif
