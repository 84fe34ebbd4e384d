/*
 * OH_VObject: the value (or values) a predicate compares with, as OpenHarmony's
 * <database/rdb/oh_value_object.h> declares it: a struct of function pointers, called as
 * `obj->putInt64(obj, &v, 1)`. Each put replaces what the object held. Made by
 * OH_Rdb_CreateValueObject (relational_store.h).
 */
#ifndef OH_VALUE_OBJECT_H
#define OH_VALUE_OBJECT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct OH_VObject OH_VObject;

struct OH_VObject {
    /* Identifies the struct (do not change it). */
    int64_t id;
    /* One value (count 1) or an array of count values. */
    int (*putInt64)(OH_VObject *valueObject, int64_t *value, uint32_t count);
    int (*putDouble)(OH_VObject *valueObject, double *value, uint32_t count);
    int (*putText)(OH_VObject *valueObject, const char *value);
    int (*putTexts)(OH_VObject *valueObject, const char **value, uint32_t count);
    int (*destroy)(OH_VObject *valueObject);
};

#ifdef __cplusplus
}
#endif

#endif /* OH_VALUE_OBJECT_H */
