// Arrow IPC stream decoding (apache-arrow), bundled from the lockfile.
export { RecordBatchReader, Type, DataType } from "apache-arrow";
