#!/usr/bin/env node
'use strict';
require('../dist/buildctl/main.js')
  .main()
  .then((code) => {
    process.exitCode = code;
  });
