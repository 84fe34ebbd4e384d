/*
 * OH_Predicates: which rows a query, update or delete touches, as OpenHarmony's
 * <database/rdb/oh_predicates.h> declares it (a struct of function pointers returning the
 * predicates, so calls chain: `p->equalTo(p, "name", v)->orderBy(p, "age", ASC)`). Field names
 * are checked and values bound by the service; no SQL text is built here.
 *
 * A step given bad arguments (NULL field or value object, an empty value object, between with
 * other than two values, an unknown order type) marks the predicates invalid: the query, update
 * or delete using them then fails with RDB_E_INVALID_ARGS rather than dropping the condition.
 * Made by OH_Rdb_CreatePredicates (relational_store.h).
 */
#ifndef OH_PREDICATES_H
#define OH_PREDICATES_H

#include <stddef.h>
#include <stdint.h>
#include "database/rdb/oh_value_object.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum OH_OrderType {
    ASC = 0,
    DESC = 1,
} OH_OrderType;

typedef struct OH_Predicates OH_Predicates;

struct OH_Predicates {
    /* Identifies the struct (do not change it). */
    int64_t id;
    OH_Predicates *(*equalTo)(OH_Predicates *predicates, const char *field, OH_VObject *valueObject);
    OH_Predicates *(*notEqualTo)(OH_Predicates *predicates, const char *field, OH_VObject *valueObject);
    OH_Predicates *(*beginWrap)(OH_Predicates *predicates);
    OH_Predicates *(*endWrap)(OH_Predicates *predicates);
    OH_Predicates *(*orOperate)(OH_Predicates *predicates);
    OH_Predicates *(*andOperate)(OH_Predicates *predicates);
    OH_Predicates *(*isNull)(OH_Predicates *predicates, const char *field);
    OH_Predicates *(*isNotNull)(OH_Predicates *predicates, const char *field);
    /* The value object holds the pattern as text. */
    OH_Predicates *(*like)(OH_Predicates *predicates, const char *field, OH_VObject *valueObject);
    /* The value object holds two values: low, high. */
    OH_Predicates *(*between)(OH_Predicates *predicates, const char *field, OH_VObject *valueObject);
    OH_Predicates *(*notBetween)(OH_Predicates *predicates, const char *field, OH_VObject *valueObject);
    OH_Predicates *(*greaterThan)(OH_Predicates *predicates, const char *field, OH_VObject *valueObject);
    OH_Predicates *(*lessThan)(OH_Predicates *predicates, const char *field, OH_VObject *valueObject);
    OH_Predicates *(*greaterThanOrEqualTo)(OH_Predicates *predicates, const char *field, OH_VObject *valueObject);
    OH_Predicates *(*lessThanOrEqualTo)(OH_Predicates *predicates, const char *field, OH_VObject *valueObject);
    OH_Predicates *(*orderBy)(OH_Predicates *predicates, const char *field, OH_OrderType type);
    /* Not supported here: marks the predicates invalid. */
    OH_Predicates *(*distinct)(OH_Predicates *predicates);
    OH_Predicates *(*limit)(OH_Predicates *predicates, unsigned int value);
    OH_Predicates *(*offset)(OH_Predicates *predicates, unsigned int rowOffset);
    /* Not supported here: marks the predicates invalid. */
    OH_Predicates *(*groupBy)(OH_Predicates *predicates, char const *const *fields, int length);
    /* The value object holds the values. */
    OH_Predicates *(*in)(OH_Predicates *predicates, const char *field, OH_VObject *valueObject);
    OH_Predicates *(*notIn)(OH_Predicates *predicates, const char *field, OH_VObject *valueObject);
    /* Forgets every step (and an earlier invalid step). */
    OH_Predicates *(*clear)(OH_Predicates *predicates);
    int (*destroy)(OH_Predicates *predicates);
};

#ifdef __cplusplus
}
#endif

#endif /* OH_PREDICATES_H */
