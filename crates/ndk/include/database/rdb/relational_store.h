/*
 * The relational store for native code, as OpenHarmony's NDK declares it
 * (<database/rdb/relational_store.h>): the same names, signatures, struct layouts and error
 * codes (relational_store_error_code.h), so C written for OpenHarmony's relational store
 * compiles here. Implemented by liboxh_ndk.so, which calls the distributed data service
 * (SA 1301) over IPC; the store is the one `oxh rdb --app BUNDLE --store NAME` opens.
 *
 * OH_Rdb_Config: storeName names the store; bundleName the app it belongs to (an app may name
 * only itself or leave it NULL; a native process must name it). The store's file lives in the
 * app's database dir the service keeps, so dataBaseDir, moduleName and area are read but do not
 * move it. isEncrypt is not supported (RDB_E_NOT_SUPPORTED). selfSize must be
 * sizeof(OH_Rdb_Config).
 *
 * A NULL pointer or a bad length anywhere is RDB_E_INVALID_ARGS (or NULL where a pointer is
 * returned).
 */
#ifndef RELATIONAL_STORE_H
#define RELATIONAL_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include "database/rdb/oh_cursor.h"
#include "database/rdb/oh_predicates.h"
#include "database/rdb/oh_value_object.h"
#include "database/rdb/oh_values_bucket.h"
#include "database/rdb/relational_store_error_code.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum OH_Rdb_SecurityLevel {
    S1 = 1,
    S2,
    S3,
    S4
} OH_Rdb_SecurityLevel;

typedef enum Rdb_SecurityArea {
    RDB_SECURITY_AREA_EL1 = 1,
    RDB_SECURITY_AREA_EL2,
    RDB_SECURITY_AREA_EL3,
    RDB_SECURITY_AREA_EL4,
} Rdb_SecurityArea;

#pragma pack(1)
typedef struct {
    int selfSize;
    const char *dataBaseDir;
    const char *storeName;
    const char *bundleName;
    const char *moduleName;
    bool isEncrypt;
    int securityLevel;
    int area;
} OH_Rdb_Config;
#pragma pack()

typedef struct {
    /* Identifies the store (do not change it). */
    int64_t id;
} OH_Rdb_Store;

OH_VObject *OH_Rdb_CreateValueObject(void);
OH_VBucket *OH_Rdb_CreateValuesBucket(void);
/* NULL when table is NULL. */
OH_Predicates *OH_Rdb_CreatePredicates(const char *table);

/* Opens (creating if need be) the store; NULL and *errCode set on failure. */
OH_Rdb_Store *OH_Rdb_GetOrOpen(const OH_Rdb_Config *config, int *errCode);
/* Closes the store (rolling back its open transaction) and frees it. */
int OH_Rdb_CloseStore(OH_Rdb_Store *store);
int OH_Rdb_DeleteStore(const OH_Rdb_Config *config);

/* The new row's rowid (> 0), or an error code. */
int OH_Rdb_Insert(OH_Rdb_Store *store, const char *table, OH_VBucket *valuesBucket);
/* The rows changed, or an error code. */
int OH_Rdb_Update(OH_Rdb_Store *store, OH_VBucket *valuesBucket, OH_Predicates *predicates);
/* The rows deleted, or an error code. */
int OH_Rdb_Delete(OH_Rdb_Store *store, OH_Predicates *predicates);
/* columnNames may be NULL with length 0 (every column). NULL on failure. */
OH_Cursor *OH_Rdb_Query(OH_Rdb_Store *store, OH_Predicates *predicates, const char *const *columnNames, int length);
int OH_Rdb_Execute(OH_Rdb_Store *store, const char *sql);
/* NULL on failure. */
OH_Cursor *OH_Rdb_ExecuteQuery(OH_Rdb_Store *store, const char *sql);

/* One write transaction per store at a time; another one open elsewhere is RDB_E_SQLITE_BUSY. */
int OH_Rdb_BeginTransaction(OH_Rdb_Store *store);
int OH_Rdb_RollBack(OH_Rdb_Store *store);
int OH_Rdb_Commit(OH_Rdb_Store *store);

typedef enum Rdb_DistributedType {
    RDB_DISTRIBUTED_CLOUD
} Rdb_DistributedType;

#define DISTRIBUTED_CONFIG_VERSION 1

typedef struct Rdb_DistributedConfig {
    int version;
    bool isAutoSync;
} Rdb_DistributedConfig;

/* Marks tables distributed (each needs a primary key; at most 32). They sync between the
 * devices of the super device, column by column. config may be NULL. */
int OH_Rdb_SetDistributedTables(OH_Rdb_Store *store, const char *tables[], uint32_t count, Rdb_DistributedType type,
    const Rdb_DistributedConfig *config);

/* What changed. */
typedef enum Rdb_ChangeType {
    RDB_DATA_CHANGE,
    RDB_ASSET_CHANGE
} Rdb_ChangeType;

/* What an observer is told of. The cloud types are RDB_E_NOT_SUPPORTED (801) here: there is
 * no cloud; LOCAL_DETAILS is this device's committed changes to its distributed tables. */
typedef enum Rdb_SubscribeType {
    RDB_SUBSCRIBE_TYPE_CLOUD,
    RDB_SUBSCRIBE_TYPE_CLOUD_DETAILS,
    RDB_SUBSCRIBE_TYPE_LOCAL_DETAILS
} Rdb_SubscribeType;

#define DISTRIBUTED_CHANGE_INFO_VERSION 1

/* The primary keys of changed rows: count of them, their OH_ColumnType, the values. */
typedef struct Rdb_KeyInfo {
    int count;
    int type;
    union Rdb_KeyData {
        uint64_t integer;
        double real;
        const char *text;
    } *data;
} Rdb_KeyInfo;

/* One table's changed rows. */
typedef struct Rdb_ChangeInfo {
    int version;
    const char *tableName;
    int ChangeType;
    Rdb_KeyInfo inserted;
    Rdb_KeyInfo updated;
    Rdb_KeyInfo deleted;
} Rdb_ChangeInfo;

typedef void (*Rdb_BriefObserver)(void *context, const char *values[], uint32_t count);
typedef void (*Rdb_DetailsObserver)(void *context, const Rdb_ChangeInfo **changeInfo, uint32_t count);

typedef union Rdb_SubscribeCallback {
    Rdb_DetailsObserver detailsObserver;
    Rdb_BriefObserver briefObserver;
} Rdb_SubscribeCallback;

typedef struct Rdb_DataObserver {
    void *context;
    Rdb_SubscribeCallback callback;
} Rdb_DataObserver;

/* Calls observer->callback.detailsObserver after each committed change to the store's
 * distributed tables (from a thread of the library's; the ChangeInfos live until it returns).
 * At most 8 observers per store. */
int OH_Rdb_Subscribe(OH_Rdb_Store *store, Rdb_SubscribeType type, const Rdb_DataObserver *observer);
/* Stops the observer with that context and callback (NULL: every observer of the type). */
int OH_Rdb_Unsubscribe(OH_Rdb_Store *store, Rdb_SubscribeType type, const Rdb_DataObserver *observer);

#ifdef __cplusplus
}
#endif

#endif /* RELATIONAL_STORE_H */
