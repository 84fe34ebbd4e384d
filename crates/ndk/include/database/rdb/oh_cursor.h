/*
 * OH_Cursor: a query's result set, as OpenHarmony's <database/rdb/oh_cursor.h> declares it (a
 * struct of function pointers: `while (cursor->goToNextRow(cursor) == RDB_OK) ...`). It starts
 * before the first row. The rows are all in the process (one reply of the service, at most
 * 1 MiB less the frame; page larger results with limit/offset).
 *
 * getSize gives a text's length in bytes plus one (its NUL) or a blob's length; getText and
 * getColumnName need a buffer that holds the text and its NUL (length counts the NUL), else
 * RDB_E_INVALID_ARGS. Values convert much as SQLite's do: a number read as text is its digits
 * (a real keeps its point), text read as a number is its value if it is one (else 0), NULL is
 * 0 or ""; a blob read as a number or as text is RDB_E_INVALID_COLUMN_TYPE.
 * Past the last row goToNextRow returns RDB_E_STEP_RESULT_IS_AFTER_LAST; a column out of range
 * is RDB_E_INVALID_COLUMN_INDEX.
 */
#ifndef OH_CURSOR_H
#define OH_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum OH_ColumnType {
    TYPE_NULL = 0,
    TYPE_INT64,
    TYPE_REAL,
    TYPE_TEXT,
    TYPE_BLOB,
} OH_ColumnType;

typedef struct OH_Cursor OH_Cursor;

struct OH_Cursor {
    /* Identifies the struct (do not change it). */
    int64_t id;
    int (*getColumnCount)(OH_Cursor *cursor, int *count);
    int (*getColumnType)(OH_Cursor *cursor, int32_t columnIndex, OH_ColumnType *columnType);
    int (*getColumnIndex)(OH_Cursor *cursor, const char *name, int *columnIndex);
    int (*getColumnName)(OH_Cursor *cursor, int32_t columnIndex, char *name, int length);
    int (*getRowCount)(OH_Cursor *cursor, int *count);
    int (*goToNextRow)(OH_Cursor *cursor);
    int (*getSize)(OH_Cursor *cursor, int32_t columnIndex, size_t *size);
    int (*getText)(OH_Cursor *cursor, int32_t columnIndex, char *value, int length);
    int (*getInt64)(OH_Cursor *cursor, int32_t columnIndex, int64_t *value);
    int (*getReal)(OH_Cursor *cursor, int32_t columnIndex, double *value);
    int (*getBlob)(OH_Cursor *cursor, int32_t columnIndex, unsigned char *value, int length);
    int (*isNull)(OH_Cursor *cursor, int32_t columnIndex, bool *isNull);
    int (*destroy)(OH_Cursor *cursor);
};

#ifdef __cplusplus
}
#endif

#endif /* OH_CURSOR_H */
