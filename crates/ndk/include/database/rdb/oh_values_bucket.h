/*
 * OH_VBucket: one row to insert or the new values of an update, column name to value, as
 * OpenHarmony's <database/rdb/oh_values_bucket.h> declares it (a struct of function pointers:
 * `bucket->putText(bucket, "name", "Lisa")`). Putting a column again replaces its value.
 * Made by OH_Rdb_CreateValuesBucket (relational_store.h).
 */
#ifndef OH_VALUES_BUCKET_H
#define OH_VALUES_BUCKET_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct OH_VBucket OH_VBucket;

struct OH_VBucket {
    /* Identifies the struct (do not change it). */
    int64_t id;
    /* How many columns the bucket holds. */
    uint16_t capability;
    int (*putText)(OH_VBucket *bucket, const char *field, const char *value);
    int (*putInt64)(OH_VBucket *bucket, const char *field, int64_t value);
    int (*putReal)(OH_VBucket *bucket, const char *field, double value);
    /* value may be NULL only when size is 0. */
    int (*putBlob)(OH_VBucket *bucket, const char *field, const uint8_t *value, uint32_t size);
    int (*putNull)(OH_VBucket *bucket, const char *field);
    int (*clear)(OH_VBucket *bucket);
    int (*destroy)(OH_VBucket *bucket);
};

#ifdef __cplusplus
}
#endif

#endif /* OH_VALUES_BUCKET_H */
