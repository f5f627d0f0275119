// mono2mesh mesh viewer: mono2meshShowMeshes(root, headers) makes every
// <canvas data-mesh=URL data-format=obj|glb> under root show its mesh,
// flat-shaded, turning slowly; drag to rotate. Self-contained WebGL 1, no downloads.
// Each canvas reports in data-status ("rendered N triangles" or "error: ...").
(function () {
  "use strict";

  function parseObj(text) {
    var positions = [], triangles = [];
    text.split("\n").forEach(function (line) {
      var parts = line.trim().split(/\s+/);
      if (parts[0] === "v") {
        positions.push(+parts[1], +parts[2], +parts[3]);
      } else if (parts[0] === "f") {
        var count = positions.length / 3;
        var idx = parts.slice(1).map(function (p) {
          var i = parseInt(p.split("/")[0], 10);
          return i < 0 ? count + i : i - 1;
        });
        for (var k = 1; k + 1 < idx.length; k++) triangles.push(idx[0], idx[k], idx[k + 1]);
      }
    });
    return { positions: positions, indices: triangles };
  }

  function parseGlb(buffer) {
    var view = new DataView(buffer);
    if (view.getUint32(0, true) !== 0x46546c67) throw new Error("not a binary glTF file");
    var jsonLength = view.getUint32(12, true);
    var json = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 20, jsonLength)));
    var binStart = 20 + jsonLength + 8;
    var primitive = json.meshes[0].primitives[0];
    function read(accessorIndex) {
      var accessor = json.accessors[accessorIndex];
      var bufferView = json.bufferViews[accessor.bufferView];
      var offset = binStart + (bufferView.byteOffset || 0) + (accessor.byteOffset || 0);
      var width = { SCALAR: 1, VEC3: 3, VEC4: 4 }[accessor.type];
      var kinds = { 5126: Float32Array, 5125: Uint32Array, 5123: Uint16Array, 5121: Uint8Array };
      var kind = kinds[accessor.componentType];
      var values = Array.from(new kind(buffer.slice(offset, offset + accessor.count * width * kind.BYTES_PER_ELEMENT)));
      // Normalized integers (vertex colours) stand for [0, 1].
      if (accessor.normalized) { var top = { 5123: 65535, 5121: 255 }[accessor.componentType]; values = values.map(function (v) { return v / top; }); }
      return { values: values, width: width };
    }
    var positions = read(primitive.attributes.POSITION).values;
    var indices = primitive.indices !== undefined ? read(primitive.indices).values : positions.map(function (_, i) { return i; }).slice(0, positions.length / 3);
    var colours = null;
    if (primitive.attributes.COLOR_0 !== undefined) {
      var c = read(primitive.attributes.COLOR_0);
      colours = [];
      // Linear (glTF) to sRGB for display; RGB of RGB or RGBA.
      for (var i = 0; i < c.values.length; i += c.width) {
        for (var a = 0; a < 3; a++) colours.push(Math.pow(c.values[i + a], 1 / 2.2));
      }
    }
    return { positions: positions, indices: indices, colours: colours };
  }

  // One vertex per triangle corner with the face normal and its colour (sRGB), centred
  // and scaled to [-1, 1].
  var GREY = [0.55, 0.62, 0.8];
  function flatten(mesh) {
    var p = mesh.positions, min = [Infinity, Infinity, Infinity], max = [-Infinity, -Infinity, -Infinity];
    for (var i = 0; i < p.length; i++) { min[i % 3] = Math.min(min[i % 3], p[i]); max[i % 3] = Math.max(max[i % 3], p[i]); }
    var centre = [0, 1, 2].map(function (a) { return (min[a] + max[a]) / 2; });
    var scale = 2 / Math.max(max[0] - min[0], max[1] - min[1], max[2] - min[2], 1e-9);
    var out = new Float32Array(mesh.indices.length * 9);
    for (var t = 0; t < mesh.indices.length; t += 3) {
      var v = [0, 1, 2].map(function (k) {
        var j = mesh.indices[t + k] * 3;
        return [0, 1, 2].map(function (a) { return (p[j + a] - centre[a]) * scale; });
      });
      var e1 = [0, 1, 2].map(function (a) { return v[1][a] - v[0][a]; });
      var e2 = [0, 1, 2].map(function (a) { return v[2][a] - v[0][a]; });
      var n = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]];
      var len = Math.hypot(n[0], n[1], n[2]) || 1;
      for (var k = 0; k < 3; k++) {
        var j = mesh.indices[t + k] * 3;
        var c = mesh.colours ? mesh.colours.slice(j, j + 3) : GREY;
        out.set([v[k][0], v[k][1], v[k][2], n[0] / len, n[1] / len, n[2] / len, c[0], c[1], c[2]], (t + k) * 9);
      }
    }
    return out;
  }

  var VERTEX = "attribute vec3 p; attribute vec3 n; attribute vec3 c; uniform mat4 m; varying float light; varying vec3 colour;" +
    "void main() { vec4 q = m * vec4(p, 1.0); gl_Position = vec4(q.xy, q.z * 0.25, 1.0); colour = c;" +
    " vec3 nn = normalize((m * vec4(n, 0.0)).xyz); light = 0.25 + 0.75 * abs(dot(nn, normalize(vec3(0.3, 0.5, -1.0)))); }";
  var FRAGMENT = "precision mediump float; varying float light; varying vec3 colour;" +
    "void main() { gl_FragColor = vec4(colour * light, 1.0); }";

  function rotation(yaw, pitch) {
    var cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch), s = 0.8;
    // Column-major: rotate about Y by yaw, then about X by pitch, then scale.
    return new Float32Array([
      s * cy, s * sp * sy, -s * cp * sy, 0,
      0, s * cp, s * sp, 0,
      s * sy, -s * sp * cy, s * cp * cy, 0,
      0, 0, 0, 1]);
  }

  function show(canvas, vertices) {
    var gl = canvas.getContext("webgl", { preserveDrawingBuffer: true });
    if (!gl) throw new Error("WebGL unavailable");
    function shader(kind, source) {
      var s = gl.createShader(kind); gl.shaderSource(s, source); gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      return s;
    }
    var program = gl.createProgram();
    gl.attachShader(program, shader(gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, shader(gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    gl.useProgram(program);
    gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ARRAY_BUFFER, vertices, gl.STATIC_DRAW);
    var p = gl.getAttribLocation(program, "p"), n = gl.getAttribLocation(program, "n"), c = gl.getAttribLocation(program, "c");
    gl.enableVertexAttribArray(p); gl.vertexAttribPointer(p, 3, gl.FLOAT, false, 36, 0);
    gl.enableVertexAttribArray(n); gl.vertexAttribPointer(n, 3, gl.FLOAT, false, 36, 12);
    gl.enableVertexAttribArray(c); gl.vertexAttribPointer(c, 3, gl.FLOAT, false, 36, 24);
    var m = gl.getUniformLocation(program, "m");
    gl.enable(gl.DEPTH_TEST);
    var yaw = 0.6, pitch = 0.4, dragging = null;
    canvas.addEventListener("mousedown", function (e) { dragging = [e.clientX, e.clientY]; });
    window.addEventListener("mouseup", function () { dragging = null; });
    window.addEventListener("mousemove", function (e) {
      if (!dragging) return;
      yaw += (e.clientX - dragging[0]) * 0.01; pitch += (e.clientY - dragging[1]) * 0.01;
      dragging = [e.clientX, e.clientY]; draw();
    });
    function draw() {
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.clearColor(0.93, 0.93, 1.0, 1.0);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      gl.uniformMatrix4fv(m, false, rotation(yaw, pitch));
      gl.drawArrays(gl.TRIANGLES, 0, vertices.length / 9);
    }
    draw();
    setInterval(function () { if (!dragging) { yaw += 0.02; draw(); } }, 50);
  }

  // Called by the status page once its panel is in, with the Authorization header the
  // mesh downloads need.
  window.mono2meshShowMeshes = function (root, headers) {
   Array.prototype.forEach.call(root.querySelectorAll("canvas[data-mesh]"), function (canvas) {
    var glb = canvas.dataset.format === "glb";
    canvas.dataset.status = "loading";
    fetch(canvas.dataset.mesh, { headers: headers })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return glb ? r.arrayBuffer() : r.text(); })
      .then(function (body) {
        var mesh = glb ? parseGlb(body) : parseObj(body);
        if (mesh.indices.length === 0) throw new Error("mesh has no faces");
        show(canvas, flatten(mesh));
        canvas.dataset.status = "rendered " + mesh.indices.length / 3 + " triangles" + (mesh.colours ? " in colour" : "");
      })
      .catch(function (e) { canvas.dataset.status = "error: " + e.message; });
   });
  };
})();
