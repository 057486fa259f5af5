/* The proxy's pre-filter for undo: may a query hold a statement that destroys data?
 *
 * Run in the relay's C pump on every simple Query ('Q') and Parse ('P') message, so it
 * must be cheap and must never say no to a statement strata.proxy.destructive would call
 * destructive (a miss loses undo; a false alarm only costs that module a look). It lexes
 * like PostgreSQL: comments (nested), strings ('', E'' with backslashes, $tag$ bodies,
 * which are scanned as SQL themselves), quoted identifiers, parentheses and ';'. A query
 * is suspect when, outside strings, comments and quoted identifiers:
 *   - a word DROP or TRUNCATE appears (ALTER ... DROP included);
 *   - a statement begins with DO (its body runs now), DEALLOCATE or DISCARD (a session's
 *     prepared statements are forgotten), or EXECUTE (a prepared statement runs; also
 *     after '(', ')', AS, ANALYZE, ANALYSE, VERBOSE);
 *   - a DELETE or UPDATE that may begin a (sub)statement (after the start, '(', ')', AS,
 *     ANALYZE, ANALYSE, VERBOSE, or PL/pgSQL's BEGIN, THEN, ELSE, LOOP) has no WHERE at
 *     its own parenthesis depth before its group or statement ends;
 *   - parentheses are unbalanced or nested deeper than MAX_DEPTH.
 * A string with a backslash is lexed both ways (standard_conforming_strings on and off),
 * and the query is suspect if either reading is.
 */
#include "_suspect.h"

#include <string.h>
#include <strings.h>

#define MAX_DEPTH 64
#define MAX_NESTING 4 /* dollar bodies inside dollar bodies scanned, at most */

enum previous { P_OTHER, P_START, P_OPENS, P_WORD_BEFORE }; /* what preceded a word */

static int is_ident_start(unsigned char c) {
    return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_' || c >= 0x80;
}

static int is_tag_char(unsigned char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }

static int is_ident_char(unsigned char c) { return is_tag_char(c) || c == '$'; }

static int word_is(const unsigned char *word, size_t length, const char *keyword) {
    return length == strlen(keyword) && strncasecmp((const char *)word, keyword, length) == 0;
}

/* Whether a DELETE or UPDATE after this word may begin a (sub)statement. */
static int before_substatement(const unsigned char *word, size_t length) {
    static const char *const words[] = {"as",   "analyze", "analyse", "verbose",
                                        "begin", "then",   "else",    "loop"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (word_is(word, length, words[i]))
            return 1;
    return 0;
}

/* The end of a '...' string whose body starts at p; notes a backslash in *saw. */
static const unsigned char *skip_string(const unsigned char *p, const unsigned char *end,
                                        int backslash, int *saw) {
    while (p < end) {
        if (*p == '\\') {
            if (saw != NULL)
                *saw = 1;
            p += backslash ? 2 : 1;
            continue;
        }
        if (*p == '\'') {
            if (p + 1 < end && p[1] == '\'') {
                p += 2;
                continue;
            }
            return p + 1;
        }
        p++;
    }
    return end;
}

static const unsigned char *find(const unsigned char *from, const unsigned char *end,
                                 const unsigned char *needle, size_t length) {
    for (; from + length <= end; from++)
        if (memcmp(from, needle, length) == 0)
            return from;
    return NULL;
}

static int scan(const unsigned char *p, const unsigned char *end, int backslash, int *saw,
                int nesting) {
    unsigned char pending[MAX_DEPTH]; /* a DELETE/UPDATE at this depth still wants a WHERE */
    int depth = 0;
    enum previous previous = P_START;
    pending[0] = 0;
    while (p < end) {
        unsigned char c = *p;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            p++;
            continue;
        }
        if (c == '-' && p + 1 < end && p[1] == '-') {
            while (p < end && *p != '\n')
                p++;
            continue;
        }
        if (c == '/' && p + 1 < end && p[1] == '*') {
            int level = 1;
            p += 2;
            while (p < end && level > 0) {
                if (p + 1 < end && p[0] == '/' && p[1] == '*') {
                    level++;
                    p += 2;
                } else if (p + 1 < end && p[0] == '*' && p[1] == '/') {
                    level--;
                    p += 2;
                } else {
                    p++;
                }
            }
            continue;
        }
        if (c == '\'') {
            p = skip_string(p + 1, end, backslash, saw);
            previous = P_OTHER;
            continue;
        }
        if (c == '"') {
            for (p++; p < end; p++) {
                if (*p == '"') {
                    if (p + 1 < end && p[1] == '"') {
                        p++;
                        continue;
                    }
                    p++;
                    break;
                }
            }
            previous = P_OTHER;
            continue;
        }
        if (c == '$') {
            const unsigned char *q = p + 1;
            if (q < end && is_ident_start(*q))
                while (q < end && is_tag_char(*q))
                    q++;
            if (q < end && *q == '$') { /* $tag$ ... $tag$ */
                size_t tag = (size_t)(q + 1 - p);
                const unsigned char *body = q + 1;
                const unsigned char *close = find(body, end, p, tag);
                const unsigned char *body_end = close != NULL ? close : end;
                if (nesting >= MAX_NESTING || scan(body, body_end, backslash, saw, nesting + 1))
                    return 1;
                p = close != NULL ? close + tag : end;
                previous = P_OTHER;
                continue;
            }
            p++; /* a parameter ($1) */
            previous = P_OTHER;
            continue;
        }
        if (is_ident_start(c)) {
            const unsigned char *word = p;
            while (p < end && is_ident_char(*p))
                p++;
            size_t length = (size_t)(p - word);
            if (length == 1 && (c | 0x20) == 'e' && p < end && *p == '\'') {
                p = skip_string(p + 1, end, 1, NULL); /* E'...': backslash escapes */
                previous = P_OTHER;
                continue;
            }
            if (word_is(word, length, "drop") || word_is(word, length, "truncate"))
                return 1;
            if (previous == P_START &&
                (word_is(word, length, "do") || word_is(word, length, "deallocate") ||
                 word_is(word, length, "discard")))
                return 1;
            if (previous != P_OTHER && word_is(word, length, "execute"))
                return 1;
            if (word_is(word, length, "delete") || word_is(word, length, "update")) {
                if (previous != P_OTHER)
                    pending[depth] = 1;
            } else if (word_is(word, length, "where")) {
                pending[depth] = 0;
            }
            previous = before_substatement(word, length) ? P_WORD_BEFORE : P_OTHER;
            continue;
        }
        p++;
        if (c == '(') {
            if (++depth >= MAX_DEPTH)
                return 1;
            pending[depth] = 0;
            previous = P_OPENS;
        } else if (c == ')') {
            if (depth == 0 || pending[depth])
                return 1;
            depth--;
            previous = P_OPENS;
        } else if (c == ';') {
            for (int d = 0; d <= depth; d++)
                if (pending[d])
                    return 1;
            depth = 0;
            pending[0] = 0;
            previous = P_START;
        } else {
            previous = P_OTHER;
        }
    }
    for (int d = 0; d <= depth; d++)
        if (pending[d])
            return 1;
    return 0;
}

int strata_query_suspect(const unsigned char *query, size_t length) {
    int saw = 0;
    if (scan(query, query + length, 0, &saw, 0))
        return 1;
    return saw && scan(query, query + length, 1, NULL, 0);
}

/* Whether ``name`` (length bytes, not empty) is one of ``names``: "\0a\0b\0". */
static int named(const unsigned char *name, size_t length, const unsigned char *names,
                 size_t names_length) {
    for (const unsigned char *at = names; at + length + 2 <= names + names_length; at++)
        if (at[0] == 0 && memcmp(at + 1, name, length) == 0 && at[length + 1] == 0)
            return 1;
    return 0;
}

int strata_message_suspect(const unsigned char *message, size_t length,
                           const unsigned char *names, size_t names_length) {
    if (length < 5)
        return 0;
    const unsigned char *body = message + 5, *end = message + length;
    if (message[0] == 'B') { /* Bind: portal name, NUL, statement name, NUL, ... */
        const unsigned char *portal_end = memchr(body, 0, (size_t)(end - body));
        if (portal_end == NULL)
            return 0;
        const unsigned char *name = portal_end + 1;
        const unsigned char *name_end = memchr(name, 0, (size_t)(end - name));
        return name_end != NULL && name_end > name &&
               named(name, (size_t)(name_end - name), names, names_length);
    }
    if (message[0] != 'Q' && message[0] != 'P')
        return 0;
    if (message[0] == 'P') { /* Parse: statement name, NUL, query, NUL, ... */
        const unsigned char *nul = memchr(body, 0, (size_t)(end - body));
        if (nul == NULL)
            return 1; /* malformed: PostgreSQL refuses it; let the careful look decide */
        if (nul > body && named(body, (size_t)(nul - body), names, names_length))
            return 1; /* a watched name defined again: the careful look forgets it */
        body = nul + 1;
    }
    const unsigned char *query_end = memchr(body, 0, (size_t)(end - body));
    return strata_query_suspect(body, (size_t)((query_end != NULL ? query_end : end) - body));
}
