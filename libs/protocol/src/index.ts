export * from './errors';
export * from './encoding';
export * from './messages';
export * from './validate';
export * from './frames';
export * from './identity';
export * from './server-identity';
