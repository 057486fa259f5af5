/* The undo pre-filter of strata/proxy/_suspect.c, used by the relay's pump. */
#ifndef STRATA_SUSPECT_H
#define STRATA_SUSPECT_H

#include <stddef.h>

/* 1 if the SQL text may hold a statement that destroys data (see _suspect.c). */
int strata_query_suspect(const unsigned char *query, size_t length);

/* The same for a whole frontend message: its query if it is a Query ('Q') or a Parse
 * ('P'); 0 for every other message. */
int strata_message_suspect(const unsigned char *message, size_t length);

#endif
